"""What the call log keeps beside the usage events (billing.UsageEvent, one per call): the
bodies, and the cost anomalies found in the tenants' daily spend."""

from django.db import models


class CallBody(models.Model):
    """A call's request and response, as sent upstream and answered (after guardrail
    redaction), compressed; deleted after the tenant's log retention."""

    request_id = models.CharField(max_length=128, unique=True)
    tenant_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField()
    # zlib of the JSON {"request": ..., "response": ...}; see gateway/call_log.py
    data = models.BinaryField()
    size = models.PositiveIntegerField()  # bytes before compression
    truncated = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="callbody_tenant_time")]

    def __str__(self) -> str:
        return self.request_id


class CostAnomaly(models.Model):
    """A day whose cost exceeded the trailing week's daily average by the tenant's factor;
    alerted (email and webhook) once."""

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    cost = models.DecimalField(max_digits=18, decimal_places=6)
    baseline = models.DecimalField(max_digits=18, decimal_places=6)  # trailing 7-day average
    factor = models.FloatField()
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day"], name="cost_anomaly_once_a_day")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}: {self.cost} vs {self.baseline}"

from django.db import models


class Price(models.Model):
    """Per-million-token prices for a public model; a change adds a row, never edits history."""

    model_name = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    effective_from = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_name", "effective_from"], name="price_once")
        ]

    def __str__(self) -> str:
        return f"{self.model_name} from {self.effective_from:%Y-%m-%d}"


class UsageEvent(models.Model):
    """One per client request, written off the hot path; `request_id` makes writes idempotent."""

    request_id = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(db_index=True)
    tenant_id = models.BigIntegerField(null=True, db_index=True)
    api_key_id = models.BigIntegerField(null=True)
    route = models.CharField(max_length=64)
    public_model = models.CharField(max_length=200, blank=True)
    served_model = models.CharField(max_length=200, blank=True)
    routing = models.CharField(max_length=400, blank=True)
    provider = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    input_tokens = models.IntegerField(null=True)
    output_tokens = models.IntegerField(null=True)
    cached_input_tokens = models.IntegerField(null=True)
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=18, decimal_places=10, null=True)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True)
    status = models.IntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    attempts = models.JSONField(default=list, blank=True)  # [{provider, model, outcome, ms}]

    def __str__(self) -> str:
        return self.request_id

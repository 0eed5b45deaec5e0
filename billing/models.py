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


class Scope(models.TextChoices):
    TENANT = "tenant", "Tenant"
    APPLICATION = "application", "Application"
    KEY = "key", "API key"


class Budget(models.Model):
    """A spending cap on a tenant, one of its applications or one of its keys.

    `thresholds` are percentages that notify once per period (email and webhook); a `hard`
    budget blocks calls at 100 % with 429 `budget_exceeded`. One per target and period: the
    services update it in place.
    """

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        MONTHLY = "monthly", "Monthly"
        TOTAL = "total", "Total"

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, related_name="budgets")
    application = models.ForeignKey(
        "portal.Application", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "portal.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTHLY)
    amount_usd = models.DecimalField(max_digits=14, decimal_places=4)
    thresholds = models.JSONField(default=list, blank=True)  # percents, e.g. [50, 80, 100]
    hard = models.BooleanField(default=True)
    notify_emails = models.JSONField(default=list, blank=True)  # empty: owners and admins
    webhook_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        target = self.api_key or self.application or self.tenant
        return f"{self.get_period_display()} budget ${self.amount_usd} on {target}"

    @property
    def scope(self) -> str:
        if self.api_key_id:
            return Scope.KEY
        return Scope.APPLICATION if self.application_id else Scope.TENANT


class BudgetNotice(models.Model):
    """A threshold notification that went out: once per budget, period and threshold."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="notices")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField()
    spent_usd = models.DecimalField(max_digits=18, decimal_places=10)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "threshold"], name="notice_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of {self.budget}"


class RateLimit(models.Model):
    """Requests and tokens per minute and concurrent requests, for a tenant, application or
    key, on every model or only on `model`. Empty fields are not limited. One per target and
    model: the services update it in place."""

    tenant = models.ForeignKey(
        "portal.Tenant", on_delete=models.CASCADE, related_name="rate_limits"
    )
    application = models.ForeignKey(
        "portal.Application", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "portal.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True)  # a public model name, or all
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        target = self.api_key or self.application or self.tenant
        return f"limits on {target}" + (f" for {self.model}" if self.model else "")

    @property
    def scope(self) -> str:
        if self.api_key_id:
            return Scope.KEY
        return Scope.APPLICATION if self.application_id else Scope.TENANT

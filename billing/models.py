from django.db import models
from django.db.models.functions import Coalesce


class Price(models.Model):
    """Per-million-token prices for a public model; a change adds a row, never edits history."""

    model_name = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    # Reasoning ("thinking") tokens; empty: billed at the output price.
    reasoning_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    per_request_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    source = models.CharField(max_length=300, blank=True)  # where the figures come from
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
    application_id = models.BigIntegerField(null=True)
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
    reasoning_tokens = models.IntegerField(null=True)  # counted within output_tokens
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=18, decimal_places=10, null=True)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True)
    status = models.IntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    attempts = models.JSONField(default=list, blank=True)  # [{provider, model, outcome, ms}]
    # The response cache: "hit", "semantic-hit", "miss", or blank when it wasn't consulted;
    # on a hit, what answering upstream had cost (the entry's original cost).
    cache = models.CharField(max_length=16, blank=True)
    cache_saved = models.DecimalField(max_digits=18, decimal_places=10, null=True)
    # Guardrail outcomes: types and counts redacted, checks flagged, the check that blocked;
    # never the matched values.
    guardrails = models.JSONField(default=dict, blank=True)
    # Request metadata, from the x-waystation-* headers or the body (gateway/metadata.py).
    end_user = models.CharField(max_length=256, blank=True)
    session_id = models.CharField(max_length=256, blank=True, db_index=True)
    trace_id = models.CharField(max_length=256, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    # A prompt API call: {api, prompt, version, experiment, arm, steps: [...]}.
    prompt = models.JSONField(default=dict, blank=True)
    # Where the time went, in ms: auth, guardrails, cache, upstream (to the answer's start),
    # first_token and total (gateway/pipeline.py).
    timings = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="usage_tenant_time")]

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


# --- rollups and monthly cost reports (billing.rollups, billing.reports) -----------------


class UsageRollup(models.Model):
    """Usage events summed per hour or day and per tenant, application, key, model, provider.

    Written only by `billing.rollups.rollup`, which replaces a range of buckets whole, so
    recomputing a bucket is idempotent. `model` is the public model that answered
    (`served_model`, else `public_model`); `application_id` is the key's application when the
    bucket was rolled up. `cache_savings` is what the cached input tokens did not cost: cached
    tokens x (input price - cached-input price) of the Price row in force at each event's time.
    """

    class Granularity(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    tenant_id = models.BigIntegerField(null=True)
    application_id = models.BigIntegerField(null=True)
    api_key_id = models.BigIntegerField(null=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=200, blank=True)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)  # status >= 400
    unpriced_requests = models.BigIntegerField(default=0)  # cost unknown (no price or tokens)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # 12 places: tokens x (a 6-place price per million) / 10^6 is exact there.
    cache_savings = models.DecimalField(max_digits=20, decimal_places=12, default=0)
    # Answers from the gateway's response cache, and what they would have cost upstream.
    response_cache_hits = models.BigIntegerField(default=0)
    response_cache_saved = models.DecimalField(max_digits=18, decimal_places=10, default=0)

    class Meta:
        constraints = [
            # NULL ids compare equal here (an expression index works on SQLite too).
            models.UniqueConstraint(
                "granularity",
                "bucket_start",
                Coalesce("tenant_id", models.Value(0)),
                Coalesce("application_id", models.Value(0)),
                Coalesce("api_key_id", models.Value(0)),
                "model",
                "provider",
                name="usage_rollup_once",
            )
        ]
        indexes = [
            models.Index(fields=["tenant_id", "granularity", "bucket_start"], name="rollup_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:00} tenant {self.tenant_id}"


class UsageRollupMark(models.Model):
    """That a bucket was rolled up: its rollups hold exactly the bucket's events with
    `id <= max_event_id`. Events stored later (late arrivals) have higher ids, so a report
    adds them from the raw events and stays equal to them to the cent."""

    granularity = models.CharField(max_length=8, choices=UsageRollup.Granularity.choices)
    bucket_start = models.DateTimeField()
    max_event_id = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["granularity", "bucket_start"], name="usage_rollup_mark_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:00} <= #{self.max_event_id}"


class ReportWebhook(models.Model):
    """A tenant's chargeback webhook: each month's cost report is POSTed here as JSON, signed
    `X-Waystation-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the secret
    (stored Fernet-encrypted, like provider keys). Set through billing.report_webhooks."""

    tenant = models.OneToOneField(
        "portal.Tenant", on_delete=models.CASCADE, related_name="report_webhook"
    )
    url = models.URLField(max_length=500)
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    last_pushed_month = models.CharField(max_length=7, blank=True)  # "YYYY-MM", delivered
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.IntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"report webhook of {self.tenant} to {self.url}"

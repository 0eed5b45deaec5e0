"""Input and output shapes of the API's budgets, rate limits and usage.

As in portal.api.serializers: inputs only validate (billing.controls applies the rules),
outputs are read-only and name every field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing import selectors as billing
from billing.models import Budget, RateLimit, Scope
from gateway.models import LanguageModel

COST = {"max_digits": 18, "decimal_places": 10}


# --- budgets ------------------------------------------------------------------------


class BudgetOutputSerializer(serializers.ModelSerializer):
    """A budget and what it has spent in its current period (pass `now` in the context to
    measure every budget of a list at the same instant)."""

    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    scope = serializers.ChoiceField(choices=Scope.choices, read_only=True)
    application = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    api_key = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    webhook_url = serializers.CharField(read_only=True, help_text="A URL; empty: none.")
    spent_usd = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()
    period_start = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id",
            "tenant",
            "scope",
            "application",
            "api_key",
            "period",
            "amount_usd",
            "spent_usd",
            "percent",
            "period_start",
            "thresholds",
            "hard",
            "notify_emails",
            "webhook_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _status(self, budget: Budget) -> billing.BudgetStatus:
        cache = self.context.setdefault("_statuses", {})
        if budget.pk not in cache:
            cache[budget.pk] = billing.budget_status(budget, self.context.get("now"))
        return cache[budget.pk]

    @extend_schema_field(serializers.DecimalField(**COST))
    def get_spent_usd(self, budget: Budget) -> str:
        return serializers.DecimalField(**COST).to_representation(self._status(budget).spent)

    @extend_schema_field(
        serializers.DecimalField(
            max_digits=12, decimal_places=1, help_text="Spent, as a percentage of the amount."
        )
    )
    def get_percent(self, budget: Budget) -> str:
        return str(self._status(budget).percent)

    @extend_schema_field(
        serializers.DateTimeField(
            allow_null=True,
            help_text="Where the current period began (UTC); null for a total budget.",
        )
    )
    def get_period_start(self, budget: Budget) -> str | None:
        start = self._status(budget).period_start
        return serializers.DateTimeField().to_representation(start) if start else None


class TargetInputSerializer(serializers.Serializer):
    application = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Id of one of the tenant's applications; empty for the whole tenant.",
    )
    api_key = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Id of one of the tenant's keys; empty for the whole tenant.",
    )


class BudgetInputSerializer(TargetInputSerializer):
    """Create the target's budget for the period, or change the one it has: the fields left
    out keep their current values (the defaults, for a new budget)."""

    period = serializers.ChoiceField(choices=Budget.Period.choices, default=Budget.Period.MONTHLY)
    amount_usd = serializers.DecimalField(max_digits=14, decimal_places=4)
    thresholds = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=20,
        help_text="Percentages (1 to 100) at which a notice goes out once per period.",
    )
    hard = serializers.BooleanField(
        required=False, help_text="Block calls with 429 budget_exceeded once spent."
    )
    notify_emails = serializers.ListField(
        child=serializers.EmailField(),
        required=False,
        max_length=20,
        help_text="Who gets the notices; empty: the tenant's owners and admins.",
    )
    webhook_url = serializers.URLField(required=False, allow_blank=True)


# --- rate limits ----------------------------------------------------------------------


class RateLimitOutputSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    scope = serializers.ChoiceField(choices=Scope.choices, read_only=True)
    application = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    api_key = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = RateLimit
        fields = [
            "id",
            "tenant",
            "scope",
            "application",
            "api_key",
            "model",
            "requests_per_minute",
            "tokens_per_minute",
            "concurrent",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RateLimitInputSerializer(TargetInputSerializer):
    """Create or change the limits of a target and model: the limits left out keep their
    current values; null lifts one. At least one limit must remain."""

    LIMITS = ("requests_per_minute", "tokens_per_minute", "concurrent")

    model = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="A public model name; empty: every model.",
    )
    requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    concurrent = serializers.IntegerField(min_value=1, required=False, allow_null=True)

    def validate_model(self, value: str) -> str:
        """A model of the catalog, or one an existing limit of the tenant already names."""
        if not value or LanguageModel.objects.filter(name=value).exists():
            return value
        tenant = self.context.get("tenant")
        if tenant is not None and RateLimit.objects.filter(tenant=tenant, model=value).exists():
            return value
        raise serializers.ValidationError(f"No model is named {value!r}.")


# --- usage ----------------------------------------------------------------------------


class UsageFilterSerializer(serializers.Serializer):
    days = serializers.ChoiceField(
        choices=[(d, f"{d} days") for d in billing.USAGE_DAYS],
        default=billing.DEFAULT_USAGE_DAYS,
        help_text="The days ending today (UTC), today included.",
    )


class UsageMetricsSerializer(serializers.Serializer):
    cost = serializers.DecimalField(**COST, help_text="US dollars.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a status of 400 or more.")
    response_cache_hits = serializers.IntegerField(
        help_text="Requests the gateway's response cache answered (exact or semantic hits)."
    )
    response_cache_saved = serializers.DecimalField(
        **COST,
        help_text="Saved by the response cache, US dollars: what its hits would have cost "
        "upstream. What the hits cost is in cost.",
    )


class UsageDaySerializer(UsageMetricsSerializer):
    day = serializers.DateField()


class UsageModelSerializer(UsageMetricsSerializer):
    model = serializers.CharField(help_text="The model that answered (else the one asked for).")


class UsageApplicationSerializer(UsageMetricsSerializer):
    application_id = serializers.IntegerField(allow_null=True)
    application_name = serializers.CharField(allow_blank=True)


class UsageKeySerializer(UsageMetricsSerializer):
    api_key_id = serializers.IntegerField(allow_null=True)
    key_name = serializers.CharField(allow_blank=True)
    key_prefix = serializers.CharField(allow_blank=True)
    application_id = serializers.IntegerField(allow_null=True)
    application_name = serializers.CharField(allow_blank=True)


class UsageOutputSerializer(serializers.Serializer):
    tenant = serializers.SlugField()
    days = serializers.IntegerField()
    first_day = serializers.DateField(source="first")
    last_day = serializers.DateField(source="last")
    totals = UsageMetricsSerializer()
    per_day = UsageDaySerializer(many=True)
    by_model = UsageModelSerializer(many=True)
    by_application = UsageApplicationSerializer(many=True)
    by_key = UsageKeySerializer(many=True)

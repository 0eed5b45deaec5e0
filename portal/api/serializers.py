"""Input and output shapes of the management API.

Inputs are plain serializers that only validate; the services do the work. Outputs are
read-only and name every field explicitly, so a secret or a hash never leaks by accident.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from portal.models import (
    ApiKey,
    Application,
    AuditEvent,
    Invitation,
    Membership,
    PersonalAccessToken,
    Product,
    Role,
    Subscription,
    Tenant,
)

MAX_GRACE_SECONDS = int(timedelta(days=30).total_seconds())


class ErrorOutputSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- tenants and members ------------------------------------------------------------


class TenantOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["slug", "name", "created_at"]
        read_only_fields = fields


class TenantCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=50, required=False)


class MemberOutputSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "email", "role", "created_at"]
        read_only_fields = fields


class MemberRoleInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationOutputSerializer(serializers.ModelSerializer):
    """The acceptance token is the invitee's secret: it is mailed, never listed."""

    invited_by = serializers.CharField(
        source="invited_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "accepted_at"]
        read_only_fields = fields


class InvitationCreateInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.DEVELOPER)


# --- applications and keys ----------------------------------------------------------


class ApplicationOutputSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Application
        fields = ["id", "tenant", "name", "description", "created_at"]
        read_only_fields = fields


class ApplicationCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    """What is known of a key after its creation: never the secret, never its hash."""

    application = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    rotated_to = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "application",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "rotated_to",
        ]
        read_only_fields = fields


class IssuedApiKeyOutputSerializer(ApiKeyOutputSerializer):
    """The one response that carries the secret: store it now, it is not shown again."""

    secret = serializers.CharField(read_only=True)

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def to_representation(self, issued):
        data = super().to_representation(issued.api_key)
        data["secret"] = issued.secret
        return data


class ApiKeyCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value


class ApiKeyRotateInputSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_SECONDS,
        help_text="How long the old key keeps working (0 to 30 days).",
    )


# --- products and subscriptions -----------------------------------------------------


class ProductOutputSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    models = serializers.SlugRelatedField(
        source="language_models", slug_field="name", many=True, read_only=True
    )

    class Meta:
        model = Product
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "owner",
            "visibility",
            "approval_required",
            "status",
            "sunset_date",
            "models",
            "created_at",
        ]
        read_only_fields = fields


class ProductUpdateInputSerializer(serializers.Serializer):
    """The fields the product services accept (portal.services.PRODUCT_FIELDS)."""

    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    visibility = serializers.ChoiceField(choices=Product.Visibility.choices, required=False)
    approval_required = serializers.BooleanField(required=False)
    status = serializers.ChoiceField(choices=Product.Status.choices, required=False)
    sunset_date = serializers.DateField(required=False, allow_null=True)


class ProductCreateInputSerializer(ProductUpdateInputSerializer):
    owner = serializers.SlugField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Slug of the owning tenant; leave empty for an operator model product.",
    )
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=50, required=False)
    models = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list
    )


class SubscriptionOutputSerializer(serializers.ModelSerializer):
    application = serializers.PrimaryKeyRelatedField(read_only=True)
    application_name = serializers.CharField(source="application.name", read_only=True)
    tenant = serializers.CharField(source="application.tenant.slug", read_only=True)
    product = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True, default=None
    )
    decided_by = serializers.CharField(
        source="decided_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "application",
            "application_name",
            "tenant",
            "product",
            "status",
            "reason",
            "requested_by",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields


class SubscriptionRequestInputSerializer(serializers.Serializer):
    product = serializers.SlugField(help_text="Slug of a product in the catalog.")


class SubscriptionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Subscription.Status.choices, required=False)


class ReasonInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class RejectInputSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Why: the requester reads it.")


# --- audit and personal access tokens ------------------------------------------------


class AuditEventOutputSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor_label",
            "tenant",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "source_ip",
            "data",
        ]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    tenant = serializers.SlugField(required=False, help_text="Only this tenant's events.")


class TokenOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = PersonalAccessToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class IssuedTokenOutputSerializer(TokenOutputSerializer):
    secret = serializers.CharField(read_only=True)

    class Meta(TokenOutputSerializer.Meta):
        fields = [*TokenOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def to_representation(self, issued):
        data = super().to_representation(issued.token)
        data["secret"] = issued.secret
        return data


class TokenCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


# --- monthly cost reports (billing.reports) ----------------------------------------------

_MONEY_HELP = "USD as an exact decimal string (unrounded; round to cents for display)."


class CostReportLineOutputSerializer(serializers.Serializer):
    id = serializers.CharField(
        allow_null=True,
        help_text="Application id, key id or model name, as a string; null: none, or the total.",
    )
    name = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a status >= 400.")
    unpriced_requests = serializers.IntegerField(
        help_text="Requests whose cost is unknown (no price or no token counts)."
    )
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="Input plus output tokens.")
    cost_usd = serializers.CharField(help_text=_MONEY_HELP)
    cache_savings_usd = serializers.CharField(
        help_text="Saved by provider prompt caching: what cached input tokens did not cost, "
        "cached tokens x (input price - cached-input price), at the prices in force at each "
        "request. " + _MONEY_HELP
    )
    response_cache_hits = serializers.IntegerField(
        help_text="Requests the gateway's response cache answered (exact or semantic hits); "
        "nothing went upstream for them."
    )
    response_cache_saved_usd = serializers.CharField(
        help_text="Saved by the response cache: what answering its hits upstream would have "
        "cost (the original answers' cost). What the hits themselves cost is in cost_usd. "
        + _MONEY_HELP
    )


class CostReportTrendOutputSerializer(serializers.Serializer):
    previous_month = serializers.CharField(help_text="YYYY-MM")
    previous_cost_usd = serializers.CharField(help_text=_MONEY_HELP)
    change_usd = serializers.CharField(help_text="This month's cost minus the previous one's.")
    change_pct = serializers.CharField(
        allow_null=True, help_text="Change in percent, to 0.01; null if the previous month cost 0."
    )


class CostReportOutputSerializer(serializers.Serializer):
    """A tenant's cost in one calendar month (UTC); `total.cost_usd` equals the sum of the
    month's usage events exactly, and each breakdown sums to the total."""

    tenant = serializers.SlugField()
    tenant_name = serializers.CharField()
    month = serializers.CharField(help_text="YYYY-MM")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField(help_text="Exclusive.")
    generated_at = serializers.DateTimeField()
    currency = serializers.CharField()
    total = CostReportLineOutputSerializer()
    by_application = CostReportLineOutputSerializer(many=True)
    by_key = CostReportLineOutputSerializer(many=True)
    by_model = CostReportLineOutputSerializer(many=True)
    trend = CostReportTrendOutputSerializer()

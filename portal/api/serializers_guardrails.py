"""Input and output shapes of the API's guardrail policies.

As in portal.api.serializers_cache: inputs only check types (portal.services.guardrails
applies the rules, and its field errors come back under the same names), outputs are
read-only and name every field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway.models import GuardrailPolicy

CHECKS_SCHEMA = {
    "oneOf": [
        {"type": "string", "enum": ["default"]},
        {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    ],
    "description": (
        '"default" (PII redaction on both stages, injection blocking on input) or a list of '
        "{check: pii|injection|moderation, stage: input|output|both, action: "
        "block|redact|flag, ...options}."
    ),
}


@extend_schema_field(
    {
        "type": "string",
        "enum": list(GuardrailPolicy.Scope.values),
        "description": "; ".join(f"`{v}`: {label}" for v, label in GuardrailPolicy.Scope.choices),
    },
    component_name="GuardrailScopeEnum",
)
class ScopeField(serializers.ChoiceField):
    def __init__(self, **kwargs) -> None:
        super().__init__(choices=GuardrailPolicy.Scope.choices, **kwargs)


@extend_schema_field(CHECKS_SCHEMA)
class ChecksField(serializers.JSONField):
    pass


class GuardrailPolicyOutputSerializer(serializers.ModelSerializer):
    scope = ScopeField(read_only=True)
    tenant = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="Slug of the tenant, for a tenant-scoped policy.",
    )
    product = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="Slug of the product, for a product-scoped policy.",
    )
    api_key = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Id of the API key, for a key-scoped policy."
    )
    checks = ChecksField(read_only=True)

    class Meta:
        model = GuardrailPolicy
        fields = [
            "id",
            "scope",
            "name",
            "tenant",
            "product",
            "api_key",
            "checks",
            "enabled",
            "from_config",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"from_config": {"help_text": "Written by the operator's config file."}}


class GuardrailPolicyFieldsInputSerializer(serializers.Serializer):
    """What a policy checks, and whether it is on; a change keeps what is left out."""

    FIXED = ("scope", "name", "tenant", "product", "api_key")

    checks = ChecksField(required=False)
    enabled = serializers.BooleanField(required=False)

    def validate(self, attrs):
        fixed = [name for name in self.FIXED if name in getattr(self, "initial_data", {})]
        if fixed and not self.fields.keys() >= set(self.FIXED):
            message = "A policy's scope, name and owner don't change: delete it and set a new one."
            raise serializers.ValidationError(dict.fromkeys(fixed, message))
        return attrs


class GuardrailPolicySetInputSerializer(GuardrailPolicyFieldsInputSerializer):
    scope = ScopeField()
    name = serializers.CharField(max_length=100, help_text="Unique within its scope.")
    checks = ChecksField()
    enabled = serializers.BooleanField(required=False, default=True)
    tenant = serializers.SlugField(
        required=False, allow_null=True, default=None, help_text="For a tenant policy."
    )
    product = serializers.SlugField(
        required=False, allow_null=True, default=None, help_text="For a product policy."
    )
    api_key = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="For a key policy."
    )

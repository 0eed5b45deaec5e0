"""Shapes of the call log's API: a call (read-only, every field named), a call with its
bodies, and the filters as documented query parameters."""

from __future__ import annotations

from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from billing.models import UsageEvent
from observability import explorer

CALL_FIELDS = [
    "request_id",
    "created_at",
    "tenant_id",
    "application_id",
    "api_key_id",
    "route",
    "public_model",
    "served_model",
    "routing",
    "provider",
    "upstream_model",
    "stream",
    "status",
    "error_type",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "tokens_estimated",
    "cost",
    "cache",
    "cache_saved",
    "guardrails",
    "guardrail_action",
    "attempts",
    "end_user",
    "session_id",
    "trace_id",
    "tags",
    "prompt",
    "timings",
]


class CallOutputSerializer(serializers.ModelSerializer):
    """One call of the call log; costs are decimal strings in US dollars."""

    guardrail_action = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = UsageEvent
        fields = CALL_FIELDS
        read_only_fields = fields

    @extend_schema_field(
        serializers.ChoiceField(choices=["", "blocked", "flagged", "redacted", "flagged, redacted"])
    )
    def get_guardrail_action(self, event: UsageEvent) -> str:
        return explorer.guardrail_action(event.guardrails)


class BodiesOutputSerializer(serializers.Serializer):
    request = serializers.JSONField(allow_null=True, help_text="As sent upstream (redacted).")
    response = serializers.JSONField(allow_null=True, help_text="As answered.")
    size = serializers.IntegerField(help_text="Bytes before compression.")
    truncated = serializers.BooleanField()


class CallDetailOutputSerializer(CallOutputSerializer):
    bodies = serializers.SerializerMethodField()
    bodies_missing = serializers.SerializerMethodField()

    class Meta(CallOutputSerializer.Meta):
        fields = [*CALL_FIELDS, "bodies", "bodies_missing"]
        read_only_fields = fields

    @extend_schema_field(BodiesOutputSerializer(allow_null=True))
    def get_bodies(self, event: UsageEvent) -> dict | None:
        kept = self.context["bodies"]
        return None if kept.missing else BodiesOutputSerializer(kept).data

    @extend_schema_field(
        serializers.ChoiceField(
            choices=["", "operator", "tenant", "product", "expired", "unreadable", "unknown"],
            help_text="Why no bodies were kept: switched off (by the operator, the tenant or "
            "the product), expired after the tenant's retention, or unknown.",
        )
    )
    def get_bodies_missing(self, event: UsageEvent) -> str:
        return self.context["bodies"].missing


def _type(field: forms.Field):
    if isinstance(field, forms.DateTimeField):
        return OpenApiTypes.DATETIME
    if isinstance(field, forms.FloatField | forms.DecimalField):  # FloatField is an IntegerField
        return OpenApiTypes.NUMBER
    if isinstance(field, forms.IntegerField):
        return OpenApiTypes.INT
    return OpenApiTypes.STR


def filter_parameters() -> list[OpenApiParameter]:
    """The explorer's filters (explorer.CallFilterForm), as query parameters."""
    params = []
    for name, field in explorer.CallFilterForm().fields.items():
        choices = getattr(field, "choices", None)
        params.append(
            OpenApiParameter(
                name,
                _type(field),
                OpenApiParameter.QUERY,
                description=" ".join(str(s) for s in (field.label, field.help_text) if s),
                enum=[value for value, _ in choices if value] if choices else None,
            )
        )
    return params

"""Input and output shapes of the API's response cache policies and purges.

As in portal.api.serializers: inputs only check types (portal.services.cache applies the
rules, and its field errors come back under the same names), outputs are read-only and name
every field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway.cache.policy import MAX_TTL_SECONDS
from gateway.models import CachePolicy
from portal.services.cache import FIELDS as POLICY_FIELDS
from portal.services.cache import MAX_ENTRIES


def _choices(component: str, choices: list[tuple[str, str]]) -> type[serializers.ChoiceField]:
    """A choice field documented as its own named enum: `scope` would otherwise collide
    with the budgets' `scope` and rename both enums of the schema."""
    labels = "; ".join(f"`{value}`: {label}" for value, label in choices)
    schema = {"type": "string", "enum": [value for value, _ in choices], "description": labels}

    @extend_schema_field(schema, component_name=component)
    class Field(serializers.ChoiceField):
        def __init__(self, **kwargs) -> None:
            super().__init__(choices=choices, **kwargs)

    return Field


ModeField = _choices("CacheModeEnum", CachePolicy.Mode.choices)
CacheableField = _choices("CacheableEnum", CachePolicy.Cacheable.choices)
ScopeField = _choices("CacheScopeEnum", CachePolicy.Scope.choices)


class CachePolicyOutputSerializer(serializers.ModelSerializer):
    product = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="Slug of the product; null for an operator-wide policy.",
    )
    mode = ModeField(read_only=True)
    cacheable = CacheableField(read_only=True)
    scope = ScopeField(read_only=True)

    class Meta:
        model = CachePolicy
        fields = ["id", "product", "model_name", *POLICY_FIELDS, "from_config", "updated_at"]
        read_only_fields = fields
        extra_kwargs = {
            "model_name": {"help_text": "The model it applies to; empty: every model."},
            "similarity_threshold": {"help_text": "Semantic matches; null: the default."},
            "embedding_model": {"help_text": "Semantic matches; empty: the local MiniLM."},
            "hit_price_usd": {"help_text": "What a hit costs the caller; null: nothing."},
            "from_config": {"help_text": "Written by the operator's config file."},
        }


class CachePolicyFieldsInputSerializer(serializers.Serializer):
    """What a policy does; fields left out keep their current values (the defaults, for a
    new policy)."""

    FIXED = ("product", "model_name")

    mode = ModeField(required=False)
    cacheable = CacheableField(required=False)
    scope = ScopeField(required=False)
    ttl_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_TTL_SECONDS, required=False, help_text="How long an entry lives."
    )
    similarity_threshold = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Above 0, at most 1: how alike a semantic match must be; null: the default.",
    )
    max_entries = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ENTRIES,
        required=False,
        help_text="Entries per semantic partition; the oldest go first.",
    )
    embedding_model = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="An enabled embedding model for semantic matches; empty: the local MiniLM.",
    )
    hit_price_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Dollars a hit costs the caller (below 1000); null: nothing.",
    )

    def validate(self, attrs):
        fixed = [name for name in self.FIXED if name in getattr(self, "initial_data", {})]
        if fixed and not self.fields.keys() >= set(self.FIXED):
            message = "A policy's product and model don't change: delete it and set a new one."
            raise serializers.ValidationError(dict.fromkeys(fixed, message))
        return attrs


class CachePolicySetInputSerializer(CachePolicyFieldsInputSerializer):
    product = serializers.SlugField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Slug of the product; null or left out for an operator-wide policy (staff).",
    )
    model_name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="One of the product's models (any model, operator-wide); empty: every model.",
    )


class CachePurgeOutputSerializer(serializers.Serializer):
    removed = serializers.IntegerField(
        help_text="Records dropped: cached answers and semantic logs."
    )

"""The `cache:` mapping of a model in the config: validation (a mixin of the config validator,
so errors carry their lines) and how it is applied (one CachePolicy per model)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from gateway.cache.policy import CACHEABLE, MAX_TTL_SECONDS, MODES, SCOPES
from gateway.models import CachePolicy

if TYPE_CHECKING:
    from gateway.config import ModelSpec

FIELDS = {
    "mode",
    "cacheable",
    "scope",
    "ttl",
    "threshold",
    "max_entries",
    "embedding_model",
    "hit_price",
}


class CacheChecks:
    """Needs the validator's `fail` and `unknown`."""

    def cache(self, node: dict, spec: ModelSpec) -> None:
        given = node.get("cache")
        if given is None:
            return
        if given is False or isinstance(given, str) and given in MODES:  # YAML reads off as False
            given = {"mode": given or "off"}
        if not isinstance(given, dict):
            self.fail(node, f"'cache' must be one of {', '.join(MODES)} or a mapping")
            return
        self.unknown(given, FIELDS, "cache")
        values: dict[str, Any] = {}
        if given.get("mode") is False:
            given["mode"] = "off"
        for key, choices in (("mode", MODES), ("cacheable", CACHEABLE), ("scope", SCOPES)):
            if key in given:
                if given[key] not in choices:
                    self.fail(given, f"cache '{key}' must be one of {', '.join(choices)}")
                values[key] = given[key]
        values["ttl_seconds"] = self._whole(given, "ttl", 1, MAX_TTL_SECONDS, 3600)
        values["max_entries"] = self._whole(given, "max_entries", 1, 1_000_000, 10_000)
        threshold = given.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            self.fail(given, "cache 'threshold' must be a number above 0 and at most 1")
        values["similarity_threshold"] = threshold
        values["embedding_model"] = str(given.get("embedding_model") or "")
        values["hit_price_usd"] = self._price(given)
        spec.cache = values

    def _whole(self, node: dict, key: str, low: int, high: int, default: int) -> int:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(node, f"cache '{key}' must be a whole number from {low} to {high}")
            return default
        return value

    def _price(self, node: dict) -> Decimal | None:
        if node.get("hit_price") is None:
            return None
        try:
            price = Decimal(str(node["hit_price"]))
        except InvalidOperation:
            price = Decimal(-1)
        if isinstance(node["hit_price"], bool) or not price.is_finite() or not 0 <= price < 1000:
            self.fail(node, "cache 'hit_price' must be a number of dollars per hit, >= 0")
            return None
        return price

    def cache_refs(self, models: dict[str, ModelSpec]) -> None:
        for spec in models.values():
            name = (spec.cache or {}).get("embedding_model")
            if name and (name not in models or models[name].mode != "embedding"):
                self.fail(
                    None,
                    f"model '{spec.name}': cache embedding_model '{name}' must be "
                    "an embedding model defined in this file",
                )


def apply_cache_policies(models: list[ModelSpec]) -> list[str]:
    """One policy per model whose config has `cache:`; earlier ones it dropped are deleted."""
    changes = []
    named = []
    for spec in models:
        if spec.cache is None:
            continue
        named.append(spec.name)
        row = CachePolicy.objects.filter(product=None, model_name=spec.name).first()
        if row is None:
            CachePolicy.objects.create(model_name=spec.name, from_config=True, **spec.cache)
            changes.append(f"created cache policy for {spec.name}")
        elif any(getattr(row, k) != v for k, v in spec.cache.items()) or not row.from_config:
            for key, value in spec.cache.items():
                setattr(row, key, value)
            row.from_config = True
            row.save()
            changes.append(f"updated cache policy for {spec.name}")
    stale = CachePolicy.objects.filter(from_config=True).exclude(model_name__in=named)
    changes += [f"removed cache policy for {row.model_name}" for row in stale]
    stale.delete()
    return changes

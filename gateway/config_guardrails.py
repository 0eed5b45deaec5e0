"""The `guardrails:` section of the config: policies by scope, validated (a mixin of the config
validator, so errors carry their lines) and applied idempotently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.guardrails.policy import validate
from gateway.models import GuardrailPolicy

SCOPES = ("operator", "tenant", "product")  # key policies are set in the portal or the API


@dataclass
class GuardrailSpec:
    name: str
    scope: str
    owner: str  # the tenant's or product's slug; "" for the operator
    checks: Any


class GuardrailChecks:
    """Needs the validator's `fail`, `text` and `unknown`."""

    def guardrail(self, node: Any) -> GuardrailSpec | None:
        if not isinstance(node, dict):
            self.fail(node, "each guardrail policy must be a mapping")
            return None
        self.unknown(node, {"name", "scope", "tenant", "product", "checks"}, "guardrail")
        name = self.text(node, "name")
        if name and not re.fullmatch(r"[-a-zA-Z0-9_]+", name):
            self.fail(node, f"guardrail name '{name}' may hold only letters, digits, - and _")
        scope = self.text(node, "scope", required=False) or "operator"
        if scope not in SCOPES:
            self.fail(node, f"guardrail scope must be one of {', '.join(SCOPES)}")
        owner = self.text(node, scope, required=scope != "operator") if scope in SCOPES[1:] else ""
        for error in validate(node.get("checks")):
            self.fail(node, f"guardrail '{name}': {error}")
        return GuardrailSpec(name, scope, owner, node.get("checks"))


def apply_guardrails(specs: list[GuardrailSpec]) -> list[str]:
    from portal.models import Product, Tenant

    changes, kept = [], []
    for spec in specs:
        owner: dict[str, Any] = {"tenant": None, "product": None}
        if spec.scope == "tenant":
            owner["tenant"] = Tenant.objects.filter(slug=spec.owner).first()
        elif spec.scope == "product":
            owner["product"] = Product.objects.filter(slug=spec.owner).first()
        if spec.scope != "operator" and owner[spec.scope] is None:
            changes.append(f"skipped guardrail {spec.name}: no {spec.scope} '{spec.owner}'")
            continue
        row, created = GuardrailPolicy.objects.update_or_create(
            scope=spec.scope,
            name=spec.name,
            defaults={**owner, "checks": spec.checks, "enabled": True, "from_config": True},
        )
        kept.append(row.pk)
        changes.append(f"{'created' if created else 'updated'} guardrail {spec.name}")
    stale = GuardrailPolicy.objects.filter(from_config=True, enabled=True).exclude(pk__in=kept)
    changes += [f"disabled guardrail {row.name}" for row in stale]
    stale.update(enabled=False)
    return changes

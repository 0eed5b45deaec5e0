"""Validation of the routing parts of the config: resilience, timeouts, what `auto` may rely
on, and the routing rules. A mixin of the config validator, so errors carry their lines."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gateway.auto import CAPABILITIES
from gateway.balance import STRATEGIES
from gateway.catalog import FALLBACK_REASONS, TIMEOUT_FIELDS
from gateway.rules import CONDITIONS

if TYPE_CHECKING:
    from gateway.config import ModelSpec, RuleSpec


class RoutingChecks:
    """Needs the validator's `fail`, `text`, `unknown` and `fallback_refs`."""

    def abilities(self, node: dict, spec: ModelSpec) -> None:
        capabilities = node.get("capabilities") or []
        if not isinstance(capabilities, list) or set(capabilities) - set(CAPABILITIES):
            self.fail(node, f"'capabilities' must list some of: {', '.join(CAPABILITIES)}")
        else:
            spec.capabilities = capabilities
        tier = node.get("tier")
        if tier is not None and tier not in (1, 2, 3):
            self.fail(node, "'tier' must be 1 (simple), 2 (moderate) or 3 (complex)")
        else:
            spec.tier = tier

    def auto_candidates(self, node: dict, spec: ModelSpec, defined: dict[str, ModelSpec]) -> None:
        names = node.get("auto")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.fail(node, "'auto' must be a non-empty list of candidate model names")
            return
        for name in names:
            candidate = defined.get(name)
            if candidate is None:
                self.fail(node, f"auto candidate '{name}' is not defined in this file")
            elif candidate.auto or not candidate.deployments or candidate.mode != "chat":
                self.fail(node, f"auto candidate '{name}' must be a chat model with deployments")
        spec.auto = names

    def rule(self, node: Any, models: dict[str, ModelSpec]) -> RuleSpec | None:
        if not isinstance(node, dict):
            self.fail(node, "each rule must be a mapping")
            return None
        self.unknown(node, {"name", "when", "route_to", "deployment"}, "rule")
        name = self.text(node, "name")
        if name and not re.match(r"^[-a-zA-Z0-9_]+$", name):
            self.fail(node, f"rule name '{name}' may hold only letters, digits, - and _")
        when = node.get("when") or {}
        if not isinstance(when, dict):
            self.fail(node, "'when' must be a mapping of conditions")
            when = {}
        self.unknown(when, set(CONDITIONS), "condition")
        self.conditions(when)
        route_to = self.text(node, "route_to", required=False)
        deployment = self.text(node, "deployment", required=False)
        if not route_to and not deployment:
            self.fail(node, f"rule '{name}' needs 'route_to' (a model) or 'deployment'")
        if route_to and route_to not in models:
            self.fail(node, f"rule '{name}' routes to model '{route_to}', not defined here")
        if deployment:
            pool = [models[route_to]] if route_to in models else list(models.values())
            if not any(deployment == d.name for m in pool for d in m.deployments):
                self.fail(node, f"rule '{name}' pins deployment '{deployment}', not defined here")
        from gateway.config import RuleSpec

        return RuleSpec(name, dict(when), route_to, deployment)

    def conditions(self, when: dict) -> None:
        for key in ("model", "tenant", "application", "key", "tags", "keywords"):
            value = when.get(key)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                self.fail(when, f"condition '{key}' must be a list of strings")
        for key in ("metadata", "header"):
            value = when.get(key)
            if value is not None and (
                not isinstance(value, dict)
                or not all(isinstance(v, str) for v in [*value, *value.values()])
            ):
                self.fail(when, f"condition '{key}' must map names to strings")
        for key in ("min_prompt_tokens", "max_prompt_tokens"):
            value = when.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                self.fail(when, f"condition '{key}' must be a whole number >= 0")
        patterns = [when.get("pattern"), *(when.get("header") or {}).values()]
        for pattern in filter(None, patterns):
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                self.fail(when, f"'{pattern}' is not a valid regular expression: {exc}")

    def resilience(self, node: dict, spec: ModelSpec) -> None:
        strategy = node.get("strategy", "weighted")
        if strategy not in STRATEGIES:
            self.fail(node, f"'strategy' must be one of {', '.join(STRATEGIES)}")
        else:
            spec.strategy = strategy
        retries = node.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
            self.fail(node, "'retries' must be an integer from 0 to 10")
        else:
            spec.retries = retries
        fallbacks = node.get("fallbacks") or []
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            self.fail(node, "'fallbacks' must be a list of model names")
        elif spec.name in fallbacks:
            self.fail(node, f"model '{spec.name}' can't fall back to itself")
        else:
            spec.fallbacks = fallbacks
            self.fallback_refs.append((node, fallbacks))
        reasons = node.get("fallback_on") or []
        if not isinstance(reasons, list) or set(reasons) - set(FALLBACK_REASONS):
            self.fail(node, f"'fallback_on' must list some of: {', '.join(FALLBACK_REASONS)}")
        else:
            spec.fallback_on = reasons

    def timeouts(self, node: dict) -> dict[str, float]:
        """Seconds for connect, first_token, idle and total; the gateway's defaults fill gaps."""
        value = node.get("timeouts")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(node, "'timeouts' must be a mapping")
            return {}
        self.unknown(value, set(TIMEOUT_FIELDS), "timeouts")
        out = {}
        for key in TIMEOUT_FIELDS:
            seconds = value.get(key)
            if seconds is None:
                continue
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                self.fail(value, f"timeout '{key}' must be a number of seconds > 0")
            else:
                out[key] = float(seconds)
        return out

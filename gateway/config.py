"""Config as code: validate a YAML file whole, then apply it idempotently.

A file with any error is rejected with the line and reason and nothing is applied. What an
earlier apply created and this file no longer names is disabled, not deleted, so history keeps
its references; what was made in the portal is left alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.db import transaction

from billing import prices
from gateway import outbound, secrets
from gateway.config_cache import CacheChecks, apply_cache_policies
from gateway.config_guardrails import GuardrailChecks, GuardrailSpec, apply_guardrails
from gateway.config_routing import RoutingChecks
from gateway.models import Deployment, LanguageModel, Provider, RoutingRule
from gateway.providers import KINDS

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
ENV_ANY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
PRICE_FIELDS = prices.FIGURES  # input, output, cached_input, reasoning per mtok; per_request_usd


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Map(dict):
    line: int = 0


class _Loader(yaml.SafeLoader):
    """Remembers the line of every mapping so errors can point at it."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map(loader.construct_pairs(node, deep=True))
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass
class ProviderSpec:
    name: str
    kind: str
    base_url: str
    api_key_env: str = ""
    api_key: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeploymentSpec:
    provider: str
    model: str
    weight: int = 1
    timeouts: dict[str, float] = field(default_factory=dict)
    price: dict[str, Decimal] | None = None  # this deployment's own, else its model's

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass
class ModelSpec:
    name: str
    mode: str
    context_window: int | None
    price: dict[str, Decimal] | None
    deployments: list[DeploymentSpec]
    strategy: str = "weighted"
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)
    fallback_on: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    tier: int | None = None
    auto: list[str] = field(default_factory=list)
    cache: dict[str, Any] | None = None  # CachePolicy fields, from `cache:`
    output_reservation: int | None = None


@dataclass
class RuleSpec:
    name: str
    when: dict[str, Any]
    route_to: str = ""
    deployment: str = ""


@dataclass
class ConfigSpec:
    providers: list[ProviderSpec]
    models: list[ModelSpec]
    rules: list[RuleSpec] = field(default_factory=list)
    guardrails: list[GuardrailSpec] = field(default_factory=list)


def parse(text: str) -> ConfigSpec:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError([f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    return _Validator().run(data)


class _Validator(RoutingChecks, CacheChecks, GuardrailChecks):
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.fallback_refs: list[tuple[Any, list[str]]] = []
        self.auto_refs: list[tuple[Any, ModelSpec]] = []

    def fail(self, node: Any, message: str) -> None:
        line = getattr(node, "line", 0)
        self.errors.append(f"line {line}: {message}" if line else message)

    def run(self, data: Any) -> ConfigSpec:
        if not isinstance(data, dict):
            raise ConfigError(["the file must be a mapping with 'providers' and 'models'"])
        unknown = set(data) - {"providers", "models", "rules", "guardrails"}
        if unknown:
            self.fail(data, f"unknown section(s): {', '.join(sorted(map(str, unknown)))}")
        providers = [self.provider(p) for p in self.items(data, "providers")]
        names = {p.name for p in providers if p}
        self.duplicates(data, [p.name for p in providers if p], "provider")
        models = [m for m in (self.model(m, names) for m in self.items(data, "models")) if m]
        self.duplicates(data, [m.name for m in models], "model")
        defined = {m.name: m for m in models}
        for node, fallbacks in self.fallback_refs:
            for name in set(fallbacks) - set(defined):
                self.fail(node, f"fallback model '{name}' is not defined in this file")
        for node, model in self.auto_refs:
            self.auto_candidates(node, model, defined)
        self.cache_refs(defined)
        rules = [self.rule(r, defined) for r in self.items(data, "rules")]
        self.duplicates(data, [r.name for r in rules if r], "rule")
        guardrails = [g for g in map(self.guardrail, self.items(data, "guardrails")) if g]
        self.duplicates(data, [f"{g.scope}:{g.name}" for g in guardrails], "guardrail")
        if self.errors:
            raise ConfigError(self.errors)
        return ConfigSpec([p for p in providers if p], models, [r for r in rules if r], guardrails)

    def items(self, data: dict, key: str) -> list[Any]:
        value = data.get(key) or []
        if not isinstance(value, list):
            self.fail(data, f"'{key}' must be a list")
            return []
        return value

    def duplicates(self, node: Any, names: list[str], what: str) -> None:
        seen = set()
        for name in names:
            if name in seen:
                self.fail(node, f"{what} '{name}' is defined twice")
            seen.add(name)

    def text(self, node: dict, key: str, required: bool = True) -> str:
        value = node.get(key)
        if value is None:
            if required:
                self.fail(node, f"'{key}' is required")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(node, f"'{key}' must be a string")
            return ""
        return str(value)

    def provider(self, node: Any) -> ProviderSpec | None:
        if not isinstance(node, dict):
            self.fail(node, "each provider must be a mapping")
            return None
        self.unknown(node, {"name", "kind", "base_url", "api_key", "options"}, "provider")
        name, kind = self.text(node, "name"), self.text(node, "kind")
        if name and not NAME.match(name):
            self.fail(node, f"provider name '{name}' may hold only letters, digits and ._:/-")
        if kind and kind not in KINDS:
            self.fail(node, f"provider kind '{kind}' is not one of {', '.join(KINDS)}")
        base_url = self.expand(node, self.text(node, "base_url", required=kind != "demo"))
        if base_url and not base_url.startswith(("http://", "https://")):
            self.fail(node, f"base_url '{base_url}' must start with http:// or https://")
        elif base_url:
            try:
                outbound.check_url(base_url)
            except outbound.OutboundRefused as exc:
                self.fail(node, f"base_url '{base_url}' is not allowed: {exc}")
        spec = ProviderSpec(name, kind, base_url, options=node.get("options") or {})
        if not isinstance(spec.options, dict):
            self.fail(node, "'options' must be a mapping")
        api_key = self.text(node, "api_key", required=False)
        ref = ENV_REF.match(api_key)
        if ref:
            spec.api_key_env = ref.group(1)
        else:
            spec.api_key = self.expand(node, api_key)
        return spec

    def expand(self, node: Any, value: str) -> str:
        def replace(match: re.Match) -> str:
            if match.group(1) not in os.environ:
                self.fail(node, f"environment variable {match.group(1)} is not set")
                return ""
            return os.environ[match.group(1)]

        return ENV_ANY.sub(replace, value)

    def unknown(self, node: dict, allowed: set[str], what: str) -> None:
        extra = set(node) - allowed
        if extra:
            self.fail(node, f"unknown {what} field(s): {', '.join(sorted(map(str, extra)))}")

    def model(self, node: Any, providers: set[str]) -> ModelSpec | None:
        if not isinstance(node, dict):
            self.fail(node, "each model must be a mapping")
            return None
        allowed = {
            "name",
            "mode",
            "context_window",
            "price",
            "deployments",
            "retries",
            "strategy",
            "fallbacks",
            "fallback_on",
            "timeouts",
            "capabilities",
            "tier",
            "auto",
            "cache",
            "output_reservation",
        }
        self.unknown(node, allowed, "model")
        name = self.text(node, "name")
        if name and not NAME.match(name):
            self.fail(node, f"model name '{name}' may hold only letters, digits and ._:/-")
        mode = self.text(node, "mode", required=False) or "chat"
        if mode not in ("chat", "embedding"):
            self.fail(node, "'mode' must be chat or embedding")
        window = node.get("context_window")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or window < 1
        ):
            self.fail(node, "'context_window' must be a positive integer")
        defaults = self.timeouts(node)
        deployments = [
            self.deployment(d, providers, defaults) for d in self.items(node, "deployments")
        ]
        is_auto = "auto" in node
        if is_auto and deployments:
            self.fail(node, f"model '{name}' is an auto model: it takes no deployments")
        if not deployments and not is_auto:
            self.fail(node, f"model '{name}' needs at least one deployment")
        price = self.price(node.get("price"), node) if node.get("price") is not None else None
        spec = ModelSpec(name, mode, window, price, [d for d in deployments if d])
        reservation = node.get("output_reservation")
        if reservation is not None and (
            not isinstance(reservation, int) or isinstance(reservation, bool) or reservation < 1
        ):
            self.fail(node, "'output_reservation' must be a positive integer")
        else:
            spec.output_reservation = reservation
        self.resilience(node, spec)
        self.abilities(node, spec)
        self.cache(node, spec)
        if is_auto:
            self.auto_refs.append((node, spec))
        return spec

    def deployment(
        self, node: Any, providers: set[str], default_timeouts: dict[str, float]
    ) -> DeploymentSpec | None:
        if not isinstance(node, dict):
            self.fail(node, "each deployment must be a mapping")
            return None
        self.unknown(node, {"provider", "model", "weight", "timeouts", "price"}, "deployment")
        provider, model = self.text(node, "provider"), self.text(node, "model")
        if provider and provider not in providers:
            self.fail(
                node, f"deployment names provider '{provider}', which this file doesn't define"
            )
        weight = node.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            self.fail(node, "'weight' must be a positive integer")
            weight = 1
        price = self.price(node["price"], node) if node.get("price") is not None else None
        return DeploymentSpec(
            provider, model, weight, default_timeouts | self.timeouts(node), price
        )

    def price(self, node: Any, parent: Any) -> dict[str, Decimal] | None:
        if not isinstance(node, dict):
            self.fail(parent, "'price' must be a mapping")
            return None
        self.unknown(node, set(PRICE_FIELDS), "price")
        out: dict[str, Decimal] = {}
        for key in PRICE_FIELDS:  # reasoning: null bills it as output; per_request_usd: 0
            if key not in node:
                if key in ("input_per_mtok", "output_per_mtok"):
                    self.fail(node, f"price '{key}' is required")
                continue
            try:
                value = Decimal(str(node[key]))
            except InvalidOperation:
                value = Decimal(-1)
            if (
                isinstance(node[key], bool)
                or not value.is_finite()
                or not 0 <= value < 1_000_000
                or value != value.quantize(Decimal("0.000001"))
            ):
                self.fail(node, f"price '{key}' must be a number >= 0 (6 decimal places at most)")
            out[key] = value
        return out


@dataclass
class ApplyReport:
    changes: list[str] = field(default_factory=list)


@transaction.atomic
def apply(spec: ConfigSpec) -> ApplyReport:
    report = ApplyReport()
    providers = {p.name: _apply_provider(p, report) for p in spec.providers}
    for model in spec.models:
        _apply_model(model, providers, report)
    stale = Provider.objects.filter(from_config=True, enabled=True).exclude(name__in=providers)
    for provider in stale:
        report.changes.append(f"disabled provider {provider.name}")
    stale.update(enabled=False)
    stale_models = LanguageModel.objects.filter(from_config=True, enabled=True).exclude(
        name__in=[m.name for m in spec.models]
    )
    for model in stale_models:
        report.changes.append(f"disabled model {model.name}")
    stale_models.update(enabled=False)
    _apply_rules(spec.rules, report)
    report.changes += apply_cache_policies(spec.models)
    report.changes += apply_guardrails(spec.guardrails)
    return report


def _apply_rules(rules: list[RuleSpec], report: ApplyReport) -> None:
    for position, rule in enumerate(rules):
        values = {
            "position": position,
            "when": rule.when,
            "route_to": rule.route_to,
            "deployment": rule.deployment,
            "enabled": True,
            "from_config": True,
        }
        _, what = _upsert(RoutingRule, {"name": rule.name}, values)
        if what:
            report.changes.append(f"{what} rule {rule.name}")
    stale = RoutingRule.objects.filter(from_config=True, enabled=True).exclude(
        name__in=[r.name for r in rules]
    )
    for rule in stale:
        report.changes.append(f"disabled rule {rule.name}")
    stale.update(enabled=False)


def _upsert(model_cls: type, lookup: dict[str, Any], values: dict[str, Any]) -> tuple[Any, str]:
    obj = model_cls.objects.filter(**lookup).first()
    if obj is None:
        return model_cls.objects.create(**lookup, **values), "created"
    changed = [k for k, v in values.items() if getattr(obj, k) != v]
    for key in changed:
        setattr(obj, key, values[key])
    if changed:
        obj.save(update_fields=changed)
        return obj, "updated"
    return obj, ""


def _apply_provider(spec: ProviderSpec, report: ApplyReport) -> Provider:
    existing = Provider.objects.filter(name=spec.name).first()
    encrypted = ""
    if spec.api_key:
        # Fernet tokens differ on every encryption: keep the stored one if it holds the same key.
        same = existing and secrets.decrypt(existing.api_key_encrypted or "") == spec.api_key
        encrypted = existing.api_key_encrypted if same else secrets.encrypt(spec.api_key)
    values = {
        "kind": spec.kind,
        "base_url": spec.base_url,
        "api_key_env": spec.api_key_env,
        "api_key_encrypted": encrypted,
        "options": spec.options,
        "enabled": True,
        "from_config": True,
    }
    provider, what = _upsert(Provider, {"name": spec.name}, values)
    if what:
        report.changes.append(f"{what} provider {spec.name}")
    return provider


def _apply_model(spec: ModelSpec, providers: dict[str, Provider], report: ApplyReport) -> None:
    values = {
        "mode": spec.mode,
        "context_window": spec.context_window,
        "strategy": spec.strategy,
        "retries": spec.retries,
        "fallbacks": spec.fallbacks,
        "fallback_on": spec.fallback_on,
        "capabilities": spec.capabilities,
        "tier": spec.tier,
        "auto_candidates": spec.auto,
        "output_reservation": spec.output_reservation,
        "enabled": True,
        "from_config": True,
    }
    model, what = _upsert(LanguageModel, {"name": spec.name}, values)
    if what:
        report.changes.append(f"{what} model {spec.name}")
    keep = []
    for dep_spec in spec.deployments:
        lookup = {
            "model": model,
            "provider": providers[dep_spec.provider],
            "upstream_model": dep_spec.model,
        }
        values = {"weight": dep_spec.weight, "timeouts": dep_spec.timeouts, "enabled": True}
        dep, what = _upsert(Deployment, lookup, values)
        keep.append(dep.pk)
        if what:
            report.changes.append(f"{what} deployment {spec.name} -> {dep_spec.name}")
        if dep_spec.price is not None:
            _apply_price(dep_spec.name, dep_spec.price, report)
    stale = model.deployments.filter(enabled=True).exclude(pk__in=keep)
    if stale.exists():
        report.changes.append(f"disabled {stale.count()} deployment(s) of {spec.name}")
        stale.update(enabled=False)
    if spec.price is not None:
        _apply_price(spec.name, spec.price, report)


def _apply_price(model_name: str, price: dict[str, Decimal], report: ApplyReport) -> None:
    # A change in any figure (or a row that another source wrote) adds a row effective now.
    if prices.price_record(model_name, price, source=prices.CONFIG_SOURCE) is not None:
        report.changes.append(f"new price for {model_name}")

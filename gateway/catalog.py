"""What the gateway can serve: public models, their deployments and prices, as one snapshot.

The snapshot is read from the database at most every GATEWAY_CATALOG_CACHE_SECONDS per
process, so the hot path touches the database only when it is stale.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from billing.pricing import PriceEntry
from gateway.cache.policy import Policy as CachePolicy
from gateway.errors import GatewayError
from gateway.guardrails.policy import Check, compile_checks

if TYPE_CHECKING:
    from gateway.rules import Rule
from gateway.schemas import Credentials
from gateway.secrets import resolve_api_key

FALLBACK_REASONS = ("exhausted", "context_length", "content_policy")
TIMEOUT_FIELDS = ("connect", "first_token", "idle", "total")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_token` and `idle` bound a stream: until its first chunk, between chunks."""

    connect: float
    first_token: float
    idle: float
    total: float

    @classmethod
    def for_deployment(cls, overrides: dict[str, float] | None) -> Timeouts:
        values = {
            "connect": settings.GATEWAY_CONNECT_TIMEOUT,
            "first_token": settings.GATEWAY_FIRST_TOKEN_TIMEOUT,
            "idle": settings.GATEWAY_READ_TIMEOUT,
            "total": settings.GATEWAY_TOTAL_TIMEOUT,
        }
        values.update({k: float(v) for k, v in (overrides or {}).items() if k in TIMEOUT_FIELDS})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment, ready to call."""

    provider: str
    kind: str
    credentials: Credentials
    weight: int
    price: PriceEntry | None = None  # its model's, so a fallback is billed at its own price
    timeouts: Timeouts | None = None

    @property
    def deployment(self) -> str:
        """The breaker's name for it: shared by every model routed to the same upstream."""
        return f"{self.provider}/{self.credentials.upstream_model}"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    mode: str
    context_window: int | None
    targets: tuple[Target, ...]
    price: PriceEntry | None
    created: int
    products: tuple[str, ...] = ()  # public products offering it, named in "subscribe" errors
    strategy: str = "weighted"
    retries: int = 0
    fallbacks: tuple[str, ...] = ()
    fallback_on: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()  # tools, vision, json: what `auto` may rely on
    tier: int | None = None  # 1 simple .. 3 complex: the prompts `auto` may send it
    auto: tuple[str, ...] = ()  # an `auto` model: its candidates, cheapest fit first
    output_reservation: int | None = None  # tokens kept for the answer in conversations

    @property
    def servable(self) -> bool:
        return bool(self.targets or self.auto)


@dataclass(frozen=True, slots=True)
class Catalog:
    models: dict[str, ModelEntry]
    fresh_until: float
    rules: tuple[Rule, ...] = ()
    # (product id or None, model name or ""): a product's policy for "" is spelled out for
    # each model it offers, so a lookup is two dictionary reads at most.
    cache_policies: dict[tuple[int | None, str], CachePolicy] = field(default_factory=dict)
    # ("operator", 0): the floor, every operator policy's checks; ("key" | "product" |
    # "tenant", id): the checks of that policy.
    guardrails: dict[tuple[str, int], tuple[Check, ...]] = field(default_factory=dict)

    def guardrail_checks(
        self, tenant_id: int, key_id: int, products: frozenset[int]
    ) -> tuple[Check, ...]:
        """The operator's floor, plus the most specific of key, product and tenant."""
        floor = self.guardrails.get(("operator", 0), ())
        specific = self.guardrails.get(("key", key_id))
        for product in sorted(products):
            if specific is None:
                specific = self.guardrails.get(("product", product))
        if specific is None:
            specific = self.guardrails.get(("tenant", tenant_id), ())
        return floor + specific

    def cache_policy(self, products: frozenset[int], model: str) -> CachePolicy:
        """The most specific: the caller's product and the model, the model, the default."""
        for product in sorted(products):
            found = self.cache_policies.get((product, model))
            if found is not None:
                return found
        return (
            self.cache_policies.get((None, model))
            or self.cache_policies.get((None, ""))
            or CachePolicy.default()
        )


_current: Catalog | None = None
_refreshing: asyncio.Task[Catalog] | None = None


async def current() -> Catalog:
    global _refreshing
    if _current is not None and _current.fresh_until >= time.monotonic():
        return _current
    if _refreshing is None:
        # Shielded in its own task: a caller that goes away must not cancel it for the others.
        _refreshing = asyncio.ensure_future(_refresh())
    return await asyncio.shield(_refreshing)


async def _refresh() -> Catalog:
    global _current, _refreshing
    try:
        _current = await sync_to_async(load, thread_sensitive=False)()
        return _current
    finally:
        _refreshing = None


def invalidate() -> None:
    global _current
    _current = None


async def resolve(name: str, allowed: bool, mode: str = "chat") -> ModelEntry:
    """The entry for a public model the caller may use, or a 404 that reveals nothing more."""
    entry = (await current()).models.get(name)
    if entry is not None and entry.servable and not allowed and entry.products:
        offered = ", ".join(f"'{p}'" for p in entry.products)
        raise GatewayError(
            "permission",
            f"This key's application is not subscribed to '{name}'. Subscribe it to {offered} "
            "in the portal's catalog.",
            param="model",
            code="subscription_required",
        )
    if not allowed:
        entry = None
    if entry is None or not entry.servable:
        raise GatewayError(
            "not_found",
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    if mode and entry.mode != mode:
        raise GatewayError(
            "invalid_request",
            f"The model '{name}' is a {entry.mode} model and can't serve this route.",
            param="model",
        )
    return entry


def load() -> Catalog:
    from billing.models import Price
    from gateway.models import Deployment, LanguageModel, RoutingRule
    from gateway.rules import Rule

    now = timezone.now()
    prices: dict[str, PriceEntry] = {}
    for price in Price.objects.filter(effective_from__lte=now).order_by("effective_from"):
        prices[price.model_name] = PriceEntry.of(price)
    targets: dict[int, list[Target]] = {}
    rows = Deployment.objects.filter(enabled=True, provider__enabled=True).select_related(
        "provider", "model"
    )
    for dep in rows:
        provider = dep.provider
        creds = Credentials(
            base_url=provider.base_url,
            api_key=resolve_api_key(
                env_name=provider.api_key_env, encrypted=provider.api_key_encrypted
            ),
            upstream_model=dep.upstream_model,
            options=provider.options or {},
        )
        targets.setdefault(dep.model_id, []).append(
            Target(
                provider.name,
                provider.kind,
                creds,
                dep.weight,
                # A deployment's own price ("provider/upstream_model"), its model's, else the
                # catalog's list price of the upstream model (billing/data/prices.yaml).
                prices.get(f"{provider.name}/{dep.upstream_model}")
                or prices.get(dep.model.name)
                or prices.get(dep.upstream_model),
                Timeouts.for_deployment(dep.timeouts),
            )
        )
    products: dict[int, list[str]] = {}
    for model_id, product in _public_products():
        products.setdefault(model_id, []).append(product)
    models = {
        m.name: ModelEntry(
            name=m.name,
            mode=m.mode,
            context_window=m.context_window,
            targets=tuple(targets.get(m.pk, ())),
            price=prices.get(m.name),
            created=int(m.created_at.timestamp()),
            products=tuple(sorted(products.get(m.pk, ()))),
            strategy=m.strategy,
            retries=m.retries,
            fallbacks=tuple(m.fallbacks or ()),
            fallback_on=frozenset(m.fallback_on or FALLBACK_REASONS),
            capabilities=frozenset(m.capabilities or ()),
            tier=m.tier,
            auto=tuple(m.auto_candidates or ()),
            output_reservation=m.output_reservation,
        )
        for m in LanguageModel.objects.filter(enabled=True)
    }
    rules = tuple(
        Rule.build(r.name, r.when, r.route_to, r.deployment)
        for r in RoutingRule.objects.filter(enabled=True).order_by("position", "pk")
    )
    fresh_until = time.monotonic() + settings.GATEWAY_CATALOG_CACHE_SECONDS
    return Catalog(models, fresh_until, rules, _cache_policies(), _guardrails())


def _guardrails() -> dict[tuple[str, int], tuple[Check, ...]]:
    from gateway.models import GuardrailPolicy

    out: dict[tuple[str, int], tuple[Check, ...]] = {}
    for row in GuardrailPolicy.objects.filter(enabled=True).order_by("pk"):
        checks = compile_checks(row.name, row.checks)
        owner = {"operator": 0, "tenant": row.tenant_id, "product": row.product_id,
                 "key": row.api_key_id}[row.scope]  # fmt: skip
        key = (row.scope, owner or 0)
        out[key] = out.get(key, ()) + checks
    return out


def _cache_policies() -> dict[tuple[int | None, str], CachePolicy]:
    from gateway.models import CachePolicy as PolicyRow

    policies: dict[tuple[int | None, str], CachePolicy] = {}
    rows = PolicyRow.objects.prefetch_related("product__language_models")
    # Product-wide rows first, so a product's row for one model overrides them.
    for row in sorted(rows, key=lambda r: bool(r.model_name)):
        policy = CachePolicy.of(row)
        if row.product_id is not None and not row.model_name:
            for model in row.product.language_models.all():
                policies[(row.product_id, model.name)] = policy
        else:
            policies[(row.product_id, row.model_name)] = policy
    return policies


def _public_products() -> list[tuple[int, str]]:
    from portal.models import Product

    through = Product.language_models.through.objects.filter(
        product__visibility=Product.Visibility.PUBLIC,
        product__status__in=[Product.Status.PUBLISHED, Product.Status.DEPRECATED],
    )
    return list(through.values_list("languagemodel_id", "product__name"))

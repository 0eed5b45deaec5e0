"""Whether and how one request uses the response cache: its policy and the client's header.

Policies come from the catalog snapshot (`gateway.models.CachePolicy`); the header
`x-waystation-cache` holds comma-separated directives: `no-cache` (don't look up), `no-store`
(don't save), `ttl=SECONDS`, `threshold=0.NN`, and `on` (opt in where the policy asks for it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from gateway.errors import invalid
from gateway.schemas import ChatRequest

HEADER = b"x-waystation-cache"
MAX_TTL_SECONDS = 30 * 24 * 3600
MODES = ("off", "exact", "semantic")
SCOPES = ("tenant", "key", "user")
CACHEABLE = ("deterministic", "always", "opt_in")


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str = "exact"  # off | exact | semantic (exact first, then semantic)
    cacheable: str = "deterministic"  # deterministic | always | opt_in
    scope: str = "tenant"  # tenant | key | user
    ttl_seconds: int = 3600
    threshold: float | None = None  # None: gateway.cache.matching.DEFAULT_THRESHOLD
    max_entries: int = 10_000
    embedding_model: str = ""  # "": the local MiniLM
    hit_price: Decimal | None = None

    @classmethod
    def default(cls) -> Policy:
        return cls(
            mode=settings.GATEWAY_CACHE_MODE,
            ttl_seconds=settings.GATEWAY_CACHE_TTL_SECONDS,
            max_entries=settings.GATEWAY_CACHE_MAX_ENTRIES,
        )

    @classmethod
    def of(cls, row) -> Policy:  # a gateway.models.CachePolicy
        return cls(
            mode=row.mode,
            cacheable=row.cacheable,
            scope=row.scope,
            ttl_seconds=row.ttl_seconds,
            threshold=row.similarity_threshold,
            max_entries=row.max_entries,
            embedding_model=row.embedding_model,
            hit_price=row.hit_price_usd,
        )


@dataclass(frozen=True, slots=True)
class Directives:
    lookup: bool = True
    store: bool = True
    opt_in: bool = False
    ttl_seconds: int | None = None
    threshold: float | None = None


def parse_directives(value: bytes | None) -> Directives:
    if not value:
        return Directives()
    fields: dict[str, object] = {}
    for raw in value.decode("latin-1").split(","):
        word = raw.strip().lower()
        name, _, arg = word.partition("=")
        if word in ("no-cache", "no-store", "on", "off"):
            if word in ("no-cache", "off"):
                fields["lookup"] = False
            if word in ("no-store", "off"):
                fields["store"] = False
            if word == "on":
                fields["opt_in"] = True
        elif name == "ttl" and arg.isdigit() and 0 < int(arg) <= MAX_TTL_SECONDS:
            fields["ttl_seconds"] = int(arg)
        elif name == "threshold" and _fraction(arg) is not None:
            fields["threshold"] = _fraction(arg)
        elif word:
            raise invalid(
                f"Unknown or invalid x-waystation-cache directive '{raw.strip()}'. Use "
                f"no-cache, no-store, on, off, ttl=SECONDS (1..{MAX_TTL_SECONDS}) or "
                "threshold=0.NN (above 0, at most 1).",
                param="x-waystation-cache",
            )
    return Directives(**fields)


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


def cacheable(policy: Policy, directives: Directives, req: ChatRequest) -> bool:
    if policy.mode == "off":
        return False
    if policy.cacheable == "always" or directives.opt_in:
        return True
    # Temperature 0 asks for the most likely answer every time, so an earlier one serves.
    return policy.cacheable == "deterministic" and req.temperature == 0


def namespace(policy: Policy, tenant_id: int, key_id: int, req: ChatRequest) -> str:
    """Entries are never shared beyond this: a tenant, one of its keys, or one end user."""
    if policy.scope == "user" and req.user:
        user = hashlib.blake2b(req.user.encode(), digest_size=12).hexdigest()
        return f"{tenant_id}:u:{user}"
    if policy.scope in ("key", "user"):  # an end-user scope without a user: the key's own
        return f"{tenant_id}:k:{key_id}"
    return f"{tenant_id}"

"""Who is calling: API key -> Principal.

Each process keeps what it read for GATEWAY_KEY_CACHE_SECONDS, which bounds how long a
revoked key keeps working on any process; concurrent misses for one key share one read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from gateway import tracing
from gateway.errors import GatewayError
from gateway.limits import BudgetSpec, LimitSpec, specs_for_key
from portal.selectors import (
    api_key_by_secret_hash,
    models_granted_to_key,
    models_without_bodies,
    products_subscribed_by_key,
)
from portal.services import hash_secret


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    tenant_id: int
    tenant_slug: str
    all_models: bool
    allowed_models: frozenset[str]
    application: str = ""  # its name, for routing rules
    key_prefix: str = ""
    application_id: int | None = None
    limits: tuple[LimitSpec, ...] = ()  # rate limits its calls count against
    budgets: tuple[BudgetSpec, ...] = ()  # hard budgets likewise
    products: frozenset[int] = frozenset()  # subscribed to: their cache policies apply
    log_bodies: bool = True  # the tenant keeps call bodies in the call log
    unlogged_models: frozenset[str] = frozenset()  # through products that keep no bodies

    def may_use(self, model: str) -> bool:
        return self.all_models or model in self.allowed_models


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal | None
    expires_at: datetime | None
    fresh_until: float


MAX_CACHED_KEYS = 10_000
_cache: dict[str, _Entry] = {}
_inflight: dict[str, asyncio.Task[_Entry]] = {}


def secret_from_headers(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get(b"x-api-key") or headers.get(b"api-key")
    return key.decode("latin-1").strip() if key else None


async def authenticate(headers: dict[bytes, bytes]) -> Principal:
    secret = secret_from_headers(headers)
    if not secret:
        raise GatewayError(
            "authentication",
            "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        )
    secret_hash = hash_secret(secret)
    entry = _cache.get(secret_hash)
    if entry is None or entry.fresh_until < time.monotonic():
        entry = await _load_once(secret_hash)
    if entry.principal is None:
        raise GatewayError("authentication", "Invalid or revoked API key.", code="invalid_api_key")
    if entry.expires_at is not None and entry.expires_at <= timezone.now():
        raise GatewayError("authentication", "This API key has expired.", code="expired_api_key")
    return entry.principal


async def caller(call_headers: dict[bytes, bytes], record: Any) -> Principal:
    """Authenticate, and put who calls (and how long that took) on the usage record."""
    started = time.perf_counter()
    with tracing.span("auth"):
        principal = await authenticate(call_headers)
    record.tenant_id, record.api_key_id = principal.tenant_id, principal.key_id
    record.application_id = principal.application_id
    record.timings["auth_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return principal


async def _load_once(secret_hash: str) -> _Entry:
    # The read runs in its own task, shielded: a caller that goes away must not cancel it
    # for the others waiting on the same key.
    task = _inflight.get(secret_hash)
    if task is None:
        task = asyncio.ensure_future(_load_and_keep(secret_hash))
        _inflight[secret_hash] = task
        task.add_done_callback(lambda _: _inflight.pop(secret_hash, None))
    return await asyncio.shield(task)


async def _load_and_keep(secret_hash: str) -> _Entry:
    entry = await sync_to_async(_load, thread_sensitive=False)(secret_hash)
    if len(_cache) >= MAX_CACHED_KEYS:
        _cache.clear()  # bounded: a flood of made-up keys must not grow memory
    _cache[secret_hash] = entry
    return entry


def _load(secret_hash: str) -> _Entry:
    fresh_until = time.monotonic() + settings.GATEWAY_KEY_CACHE_SECONDS
    key = api_key_by_secret_hash(secret_hash=secret_hash)
    if key is None or key.revoked_at is not None:
        return _Entry(None, None, fresh_until)
    limit_specs, budget_specs = specs_for_key(key)
    principal = Principal(
        key_id=key.pk,
        tenant_id=key.tenant_id,
        tenant_slug=key.tenant.slug,
        all_models=key.all_models,
        allowed_models=models_granted_to_key(key=key),
        application=key.application.name if key.application_id else "",
        key_prefix=key.prefix,
        application_id=key.application_id,
        limits=limit_specs,
        budgets=budget_specs,
        products=products_subscribed_by_key(key=key),
        log_bodies=key.tenant.log_bodies,
        unlogged_models=models_without_bodies(key=key),
    )
    return _Entry(principal, key.expires_at, fresh_until)

"""The response cache, as the pipeline uses it: `consult` before routing, `save` after.

An exact hit needs one store read. A semantic lookup embeds the cache text (the last user
message), reads what is new in the partition's log, searches this process's mirror of it and
reads the best candidates that pass `matching.agree`. The cache never fails a request: when the
store or the embedder fails, the request goes upstream as a miss and the log says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings

from gateway import catalog, router
from gateway.cache import embedder, entries, keys, matching
from gateway.cache.index import Mirrors
from gateway.cache.policy import (
    HEADER,
    Directives,
    Policy,
    cacheable,
    namespace,
    parse_directives,
)
from gateway.cache.store import CacheStore, MemoryCacheStore, RedisCacheStore
from gateway.errors import GatewayError
from gateway.schemas import ChatRequest, ChatResponse, EmbeddingRequest

if TYPE_CHECKING:
    import numpy as np

    from gateway.auth import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str  # hit | semantic-hit
    response: ChatResponse
    saved: Decimal | None  # what the original answer cost
    age_seconds: int
    similarity: float | None = None


@dataclass(slots=True)
class Lookup:
    """One request's dealings with the cache: what it found, and what saving needs."""

    policy: Policy
    directives: Directives
    tenant_id: int
    namespace: str
    exact_key: str
    text: str | None
    hit: Hit | None = None
    vector: np.ndarray | None = None
    partition: str | None = None

    @property
    def status(self) -> str:
        if self.hit is not None:
            return self.hit.kind
        return "miss" if self.directives.lookup else "bypass"

    @property
    def semantic(self) -> bool:
        return self.policy.mode == "semantic" and self.text is not None

    @property
    def stores(self) -> bool:
        return self.directives.store

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(HEADER, self.status.encode())]
        if self.hit is not None:
            headers.append((b"x-waystation-cache-age", str(self.hit.age_seconds).encode()))
            if self.hit.similarity is not None:
                similarity = f"{self.hit.similarity:.4f}".encode()
                headers.append((b"x-waystation-cache-similarity", similarity))
        return headers


_store: CacheStore | None = None
_mirrors = Mirrors(max_partitions=512)
_failures_logged_at = 0.0


def store() -> CacheStore:
    global _store
    if _store is None:
        _store = (
            RedisCacheStore(settings.REDIS_URL)
            if settings.DISTRIBUTED
            else MemoryCacheStore(settings.GATEWAY_CACHE_MEMORY_ITEMS)
        )
    return _store


def reset() -> None:
    """Forget this process's store clients and mirrors (tests, and after a fork)."""
    global _store
    _store = None
    _mirrors.clear()


async def consult(
    principal: Principal, req: ChatRequest, headers: dict[bytes, bytes]
) -> Lookup | None:
    """None when the cache doesn't apply to this request at all."""
    directives = parse_directives(headers.get(HEADER))
    policy = (await catalog.current()).cache_policy(principal.products, req.model)
    if policy.mode == "off":
        return None
    if not cacheable(policy, directives, req):
        skip = Directives(lookup=False, store=False)
        return Lookup(policy, skip, principal.tenant_id, namespace="", exact_key="", text=None)
    space = namespace(policy, principal.tenant_id, principal.key_id, req)
    lookup = Lookup(
        policy=policy,
        directives=directives,
        tenant_id=principal.tenant_id,
        namespace=space,
        exact_key=keys.exact_key(space, req),
        text=keys.cache_text(req) if policy.mode == "semantic" else None,
    )
    if directives.lookup:
        try:
            lookup.hit = await _find(lookup, req)
        except Exception as exc:  # noqa: BLE001 - any cache failure is a miss, never an error
            _log_failure("lookup", exc)
    return lookup


async def _find(lookup: Lookup, req: ChatRequest) -> Hit | None:
    exact_key = _exact_key(lookup)
    (raw,) = await store().get_many([exact_key])
    if raw is not None:
        return _hit("hit", raw)
    if not lookup.semantic:
        return None
    await _embed(lookup, req)
    mirror = await _mirrors.synced(store(), _log_key(lookup))
    threshold = lookup.directives.threshold or lookup.policy.threshold
    threshold = threshold or matching.DEFAULT_THRESHOLD
    candidates = [
        c for c in mirror.search(lookup.vector, threshold) if matching.agree(lookup.text, c.text)
    ]
    if not candidates:
        return None
    found = await store().get_many([c.entry_key for c in candidates])
    for candidate, raw in zip(candidates, found, strict=True):
        if raw is None:  # expired or evicted since it was logged
            mirror.forget(candidate.label)
            continue
        return _hit("semantic-hit", raw, candidate.similarity)
    return None


def _hit(kind: str, raw: bytes, similarity: float | None = None) -> Hit:
    entry = entries.decode(raw, response_id="")
    age = max(0, int(time.time() - entry.created))
    return Hit(kind, entry.response, entry.cost, age, similarity)


async def save(lookup: Lookup, req: ChatRequest, resp: ChatResponse, cost: Decimal | None) -> None:
    if not lookup.stores or not entries.storable(resp):
        return
    ttl = lookup.directives.ttl_seconds or lookup.policy.ttl_seconds
    value = entries.encode(resp, cost)
    try:
        await store().put(_exact_key(lookup), value, ttl)
        if lookup.semantic:
            await _embed(lookup, req)
            await store().append(
                _log_key(lookup),
                f"{_prefix()}:{lookup.tenant_id}:e:{lookup.partition}:{lookup.exact_key}",
                lookup.vector.tobytes(),
                lookup.text,
                value,
                ttl,
                lookup.policy.max_entries,
            )
    except Exception as exc:  # noqa: BLE001 - an answer that can't be kept is still served
        _log_failure("save", exc)


async def _embed(lookup: Lookup, req: ChatRequest) -> None:
    if lookup.vector is not None:
        return
    model = lookup.policy.embedding_model
    if model:
        lookup.vector = await _embed_through_gateway(model, lookup.text)
    else:
        lookup.vector = await embedder.local().embed(lookup.text)
    lookup.partition = keys.context_key(lookup.namespace, req, model or embedder.LOCAL_MODEL)


async def _embed_through_gateway(model: str, text: str) -> np.ndarray:
    import numpy as np

    entry = await catalog.resolve(model, allowed=True, mode="embedding")
    resp, _ = await router.embed(entry, EmbeddingRequest(model, (text,)), [])
    vector = np.asarray(resp.vectors[0], dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _exact_key(lookup: Lookup) -> str:
    return f"{_prefix()}:{lookup.tenant_id}:x:{lookup.exact_key}"


def _log_key(lookup: Lookup) -> str:
    return f"{_prefix()}:{lookup.tenant_id}:l:{lookup.partition}"


def _prefix() -> str:
    return settings.GATEWAY_CACHE_KEY_PREFIX


async def purge(tenant_id: int) -> int:
    """Drop every entry of one tenant, in every process's store; returns records removed."""
    removed = await store().purge(f"{_prefix()}:{tenant_id}:")
    return removed


def _log_failure(what: str, exc: Exception) -> None:
    global _failures_logged_at
    if isinstance(exc, GatewayError):
        log.warning("cache %s: %s", what, exc.message)
    elif time.monotonic() - _failures_logged_at > 10:  # once per 10 s while the store is away
        _failures_logged_at = time.monotonic()
        log.warning("cache %s failed, serving without it: %r", what, exc)

"""Which deployment answers: weighted random order, retries with backoff, then fallbacks.

A stream is committed to a deployment once its upstream answered 200; failures after that
are the stream's own (see pipeline).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway import balance, catalog, upstream
from gateway.breaker import breakers
from gateway.catalog import ModelEntry, Target
from gateway.errors import GatewayError
from gateway.providers import ProviderKind, provider_kind
from gateway.providers.base import Adapter
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    UpstreamRequest,
)

T = TypeVar("T")


@dataclass
class OpenStream:
    """An upstream stream that answered 200; its body is still to be read."""

    target: Target
    adapter: Adapter
    response: upstream.UpstreamResponse


Attempt = Callable[[Target, ProviderKind], Awaitable[T]]

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0
# A Retry-After longer than this is not waited for: the next deployment or model goes instead.
MAX_RETRY_AFTER_SECONDS = 5.0


def backoff_seconds(attempt: int, retry_after: float | None) -> float | None:
    """Exponential backoff with full jitter, at least the upstream's Retry-After.

    None: the upstream asked for a longer pause than a client should wait.
    """
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
        return None
    delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))
    return max(delay, retry_after or 0.0)


class RetryBudget:
    """Retries may add at most `ratio` of the traffic (plus a small floor per second), so that
    during an outage retries can't multiply the load on a struggling provider. Per process.
    """

    def __init__(self, ratio: float = 0.2, floor_per_second: float = 5.0, cap: float = 100.0):
        self.ratio, self.floor, self.cap = ratio, floor_per_second, cap
        self.tokens, self._at = cap, time.monotonic()

    def deposit(self) -> None:
        now = time.monotonic()
        refill = (now - self._at) * self.floor + self.ratio
        self.tokens, self._at = min(self.cap, self.tokens + refill), now

    def withdraw(self) -> bool:
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


retry_budget = RetryBudget()


def fallback_reason(err: GatewayError) -> str | None:
    if err.kind == "context_length_exceeded":
        return "context_length"
    if err.kind == "content_filter":
        return "content_policy"
    return "exhausted" if err.retryable else None


async def _serve(entry: ModelEntry, attempt: Attempt[T], attempts: list[dict]) -> T:
    """The model's deployments with retries, then its fallbacks in order."""
    chain = [entry]
    while True:
        try:
            return await _first_success(chain[-1], attempt, attempts)
        except GatewayError as err:
            nxt = await _next_fallback(entry, chain, fallback_reason(err))
            if nxt is None:
                raise
            chain.append(nxt)


async def _next_fallback(entry: ModelEntry, tried: list[ModelEntry], reason: str | None):
    if reason is None or reason not in entry.fallback_on:
        return None
    snapshot = await catalog.current()
    names = {m.name for m in tried}
    for name in entry.fallbacks:
        candidate = snapshot.models.get(name)
        if candidate is not None and candidate.targets and name not in names:
            if candidate.mode == entry.mode:
                return candidate
    return None


async def _first_success(entry: ModelEntry, attempt: Attempt[T], attempts: list[dict]) -> T:
    order = balance.order(entry.name, entry.strategy, entry.targets)
    last: GatewayError | None = None
    # Each deployment once (failover needs no pause), then `retries` more rounds with backoff.
    retry_budget.deposit()
    for n in range(max(len(order), entry.retries + 1)):
        if last is not None and n >= len(order):
            pause = backoff_seconds(n - len(order), last.retry_after)
            if pause is None or not retry_budget.withdraw():
                break
            await asyncio.sleep(pause)
        target = order[n % len(order)]
        started = time.perf_counter()
        health = breakers()
        if not await health.allows(target.deployment):
            _log(attempts, entry, target, "breaker_open", started)
            last = last or GatewayError(
                "overloaded", f"Every deployment of '{entry.name}' is cooling down.", retryable=True
            )
            continue
        balance.started(target.deployment)
        try:
            result = await attempt(target, provider_kind(target.kind))
        except GatewayError as err:
            balance.finished(target.deployment, None)
            _log(attempts, entry, target, err.kind, started)
            if not err.retryable:
                raise
            await health.record(target.deployment, ok=False)
            last = err
            continue
        balance.finished(target.deployment, (time.perf_counter() - started) * 1000)
        _log(attempts, entry, target, "ok", started)
        await health.record(target.deployment, ok=True)
        return result
    assert last is not None
    raise last


def _log(attempts: list[dict], entry: ModelEntry, target: Target, outcome: str, started: float):
    attempts.append(
        {
            "model": entry.name,
            "provider": target.provider,
            "upstream_model": target.credentials.upstream_model,
            "outcome": outcome,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
    )


async def _read_ok(target: Target, kind: ProviderKind, up: UpstreamRequest) -> bytes:
    resp = await upstream.send(target.provider, kind, up)
    body = await resp.read()
    if resp.status != 200:
        raise kind.adapter.parse_error(resp.status, resp.headers, body)
    return body


async def complete(
    entry: ModelEntry, req: ChatRequest, attempts: list[dict]
) -> tuple[ChatResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[ChatResponse, Target]:
        up = kind.adapter.build_chat_request(req, target.credentials)
        body = await _read_ok(target, kind, up)
        return kind.adapter.parse_chat_response(body), target

    return await _serve(entry, attempt, attempts)


async def embed(
    entry: ModelEntry, req: EmbeddingRequest, attempts: list[dict]
) -> tuple[EmbeddingResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[EmbeddingResponse, Target]:
        up = kind.adapter.build_embedding_request(req, target.credentials)
        body = await _read_ok(target, kind, up)
        return kind.adapter.parse_embedding_response(body), target

    return await _serve(entry, attempt, attempts)


async def open_stream(entry: ModelEntry, req: ChatRequest, attempts: list[dict]) -> OpenStream:
    async def attempt(target: Target, kind: ProviderKind) -> OpenStream:
        up = kind.adapter.build_chat_request(req, target.credentials)
        resp = await upstream.send(target.provider, kind, up)
        if resp.status != 200:
            body = await resp.read()
            raise kind.adapter.parse_error(resp.status, resp.headers, body)
        return OpenStream(target, kind.adapter, resp)

    return await _serve(entry, attempt, attempts)

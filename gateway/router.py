"""Which deployment answers: the model's balance order, retries with backoff, then fallbacks.

A stream is committed to a deployment once its first chunk arrived, so that a deployment that
fails, stalls or breaks before it has sent anything is left for the next one while the client
has seen nothing; failures after that are the stream's own (see pipeline).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway import balance, catalog, shared, upstream
from gateway.breaker import breakers
from gateway.catalog import ModelEntry, Target, Timeouts
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
    """An upstream stream that answered 200 and sent its first chunk; the rest is to be read.

    It counts as in flight on its deployment (for least-busy balancing) until `release`.
    """

    target: Target
    adapter: Adapter
    response: upstream.UpstreamResponse
    first_chunk: bytes
    released: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.first_chunk
        async for chunk in self.response.chunks:
            yield chunk

    def release(self) -> None:
        if not self.released:
            self.released = True
            balance.finished(self.target.deployment)

    async def failed(self) -> None:
        """The stream broke after it was committed: that counts against the deployment too."""
        self.response.abort()
        await breakers().record(self.target.deployment, ok=False)


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
        await shared.refresh()
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
            balance.finished(target.deployment)
            _log(attempts, entry, target, err.kind, started)
            if not err.retryable:
                raise
            await health.record(target.deployment, ok=False)
            last = err
            continue
        except BaseException:
            balance.finished(target.deployment)
            raise
        balance.observe_latency(target.deployment, (time.perf_counter() - started) * 1000)
        if not isinstance(result, OpenStream):
            balance.finished(target.deployment)
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


async def _read_ok(
    target: Target, kind: ProviderKind, up: UpstreamRequest, parse: Callable[[bytes], T]
) -> T:
    resp = await upstream.send(target.provider, kind, up, _timeouts(target))
    try:
        body = await resp.read()
    except GatewayError as err:
        err.retryable = True  # the body broke off: the client has seen none of it
        raise
    if resp.status != 200:
        raise kind.adapter.parse_error(resp.status, resp.headers, body)
    try:
        return parse(body)
    except GatewayError as err:
        err.retryable = err.kind == "upstream_error"  # a garbled answer; another may be whole
        raise


async def complete(
    entry: ModelEntry, req: ChatRequest, attempts: list[dict]
) -> tuple[ChatResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[ChatResponse, Target]:
        up = kind.adapter.build_chat_request(req, target.credentials)
        return await _read_ok(target, kind, up, kind.adapter.parse_chat_response), target

    return await _serve(entry, attempt, attempts)


async def embed(
    entry: ModelEntry, req: EmbeddingRequest, attempts: list[dict]
) -> tuple[EmbeddingResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[EmbeddingResponse, Target]:
        up = kind.adapter.build_embedding_request(req, target.credentials)
        return await _read_ok(target, kind, up, kind.adapter.parse_embedding_response), target

    return await _serve(entry, attempt, attempts)


async def open_stream(entry: ModelEntry, req: ChatRequest, attempts: list[dict]) -> OpenStream:
    async def attempt(target: Target, kind: ProviderKind) -> OpenStream:
        up = kind.adapter.build_chat_request(req, target.credentials)
        timeouts = _timeouts(target)
        resp: upstream.UpstreamResponse | None = None
        try:
            async with asyncio.timeout(timeouts.first_token):
                resp = await upstream.send(target.provider, kind, up, timeouts, stream=True)
                if resp.status != 200:
                    body = await resp.read()
                    raise kind.adapter.parse_error(resp.status, resp.headers, body)
                first = await anext(aiter(resp.chunks), b"")
        except TimeoutError:
            _abort(resp)
            raise GatewayError(
                "upstream_timeout",
                f"{target.provider} sent no first token within {timeouts.first_token:g} s.",
                retryable=True,
            ) from None
        except GatewayError as err:
            _abort(resp)
            if resp is None or resp.status != 200 or err.retryable:
                raise
            # The stream broke before it sent anything: nothing has reached the client yet.
            err.retryable = True
            raise
        if not first:
            resp.abort()
            raise GatewayError(
                "upstream_error",
                f"{target.provider} answered with an empty stream.",
                retryable=True,
            )
        return OpenStream(target, kind.adapter, resp, first)

    return await _serve(entry, attempt, attempts)


def _abort(resp: upstream.UpstreamResponse | None) -> None:
    if resp is not None:
        resp.abort()


def _timeouts(target: Target) -> Timeouts:
    return target.timeouts or Timeouts.for_deployment(None)

"""Which deployment answers: weighted random order, moving on after retryable failures.

A stream is committed to a deployment once its upstream answered 200; failures after that
are the stream's own (see pipeline).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway import upstream
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


def attempt_order(targets: tuple[Target, ...]) -> list[Target]:
    """Weighted random order without replacement (Efraimidis–Spirakis keys)."""
    if len(targets) == 1:
        return list(targets)
    keyed = [(random.random() ** (1.0 / max(t.weight, 1)), t) for t in targets]
    return [t for _, t in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


Attempt = Callable[[Target, ProviderKind], Awaitable[T]]


async def _first_success(entry: ModelEntry, attempt: Attempt[T]) -> T:
    last: GatewayError | None = None
    for target in attempt_order(entry.targets):
        try:
            return await attempt(target, provider_kind(target.kind))
        except GatewayError as err:
            if not err.retryable:
                raise
            last = err
    assert last is not None
    raise last


async def _read_ok(target: Target, kind: ProviderKind, up: UpstreamRequest) -> bytes:
    resp = await upstream.send(target.provider, kind, up)
    body = await resp.read()
    if resp.status != 200:
        raise kind.adapter.parse_error(resp.status, resp.headers, body)
    return body


async def complete(entry: ModelEntry, req: ChatRequest) -> tuple[ChatResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[ChatResponse, Target]:
        up = kind.adapter.build_chat_request(req, target.credentials)
        body = await _read_ok(target, kind, up)
        return kind.adapter.parse_chat_response(body), target

    return await _first_success(entry, attempt)


async def embed(entry: ModelEntry, req: EmbeddingRequest) -> tuple[EmbeddingResponse, Target]:
    async def attempt(target: Target, kind: ProviderKind) -> tuple[EmbeddingResponse, Target]:
        up = kind.adapter.build_embedding_request(req, target.credentials)
        body = await _read_ok(target, kind, up)
        return kind.adapter.parse_embedding_response(body), target

    return await _first_success(entry, attempt)


async def open_stream(entry: ModelEntry, req: ChatRequest) -> OpenStream:
    async def attempt(target: Target, kind: ProviderKind) -> OpenStream:
        up = kind.adapter.build_chat_request(req, target.credentials)
        resp = await upstream.send(target.provider, kind, up)
        if resp.status != 200:
            body = await resp.read()
            raise kind.adapter.parse_error(resp.status, resp.headers, body)
        return OpenStream(target, kind.adapter, resp)

    return await _first_success(entry, attempt)

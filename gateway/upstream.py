"""The one place that talks HTTP to providers: pooled aiohttp sessions with explicit timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from django.conf import settings

from gateway.errors import GatewayError
from gateway.providers import ProviderKind
from gateway.schemas import UpstreamRequest

_sessions: dict[tuple[int, str], aiohttp.ClientSession] = {}


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    _abort: Any = field(default=None)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks])

    def abort(self) -> None:
        """Drop the connection (a half-read stream can't go back to the pool)."""
        if self._abort is not None:
            self._abort()
            self._abort = None


def _session(provider: str) -> aiohttp.ClientSession:
    # One pool per provider and event loop (a session can't cross loops).
    key = (id(asyncio.get_running_loop()), provider)
    session = _sessions.get(key)
    if session is None or session.closed:
        timeout = aiohttp.ClientTimeout(
            total=settings.GATEWAY_TOTAL_TIMEOUT,
            connect=settings.GATEWAY_CONNECT_TIMEOUT,
            sock_read=settings.GATEWAY_READ_TIMEOUT,
        )
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        session = aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        _sessions[key] = session
    return session


async def send(provider: str, kind: ProviderKind, req: UpstreamRequest) -> UpstreamResponse:
    """Send a request; the body is streamed by `chunks`. Connection failures are retryable."""
    if kind.local_server is not None:
        status, chunks = await kind.local_server(req)
        return UpstreamResponse(status, {}, chunks)
    try:
        resp = await _session(provider).request(
            req.method, req.url, headers=req.headers, data=req.body
        )
    except TimeoutError as exc:
        raise GatewayError(
            "upstream_timeout", f"{provider} did not answer in time.", retryable=True
        ) from exc
    except aiohttp.ClientError as exc:
        raise GatewayError(
            "upstream_error",
            f"Could not reach {provider}: {exc.__class__.__name__}.",
            retryable=True,
        ) from exc
    return UpstreamResponse(resp.status, dict(resp.headers), _body(provider, resp), resp.close)


async def _body(provider: str, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        raise GatewayError("upstream_timeout", f"{provider} stopped sending in time.") from exc
    except aiohttp.ClientError as exc:
        raise GatewayError("upstream_error", f"The connection to {provider} broke.") from exc
    finally:
        resp.release()


async def close_all() -> None:
    for session in list(_sessions.values()):
        await session.close()
    _sessions.clear()

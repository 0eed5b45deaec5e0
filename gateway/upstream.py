"""The one place that talks HTTP to providers: pooled aiohttp sessions with explicit timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import aiohttp

from gateway import outbound
from gateway.catalog import Timeouts
from gateway.errors import GatewayError
from gateway.providers import ProviderKind
from gateway.schemas import UpstreamRequest

log = logging.getLogger(__name__)
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
        # The resolver drops addresses the outbound policy forbids, on every lookup (DNS
        # rebinding); the DNS cache holds only what it kept.
        connector = aiohttp.TCPConnector(
            limit=0, ttl_dns_cache=300, keepalive_timeout=30, resolver=outbound.PolicyResolver()
        )
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        _sessions[key] = session
    return session


@lru_cache(maxsize=256)
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    # No sock_read: a long non-streamed completion may be silent until it is done, and a
    # stream's silences are bounded by first_token (router) and idle (the watchdog below).
    return aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect)


async def send(
    provider: str,
    kind: ProviderKind,
    req: UpstreamRequest,
    timeouts: Timeouts,
    stream: bool = False,
) -> UpstreamResponse:
    """Send a request; the body is streamed by `chunks`. Connection failures are retryable."""
    if kind.local_server is not None:
        status, chunks = await kind.local_server(req)
        return UpstreamResponse(status, {}, chunks)
    try:
        # aiohttp connects to an IP literal without its resolver: those are checked here.
        outbound.check_url_now(req.url)
        resp = await _session(provider).request(
            req.method,
            req.url,
            headers=req.headers,
            data=req.body,
            timeout=_client_timeout(timeouts),
            allow_redirects=False,  # a 3xx is the provider's answer, never followed
        )
    except outbound.OutboundRefused as exc:
        log.warning("upstream %s refused by the outbound policy: %s", provider, exc)
        raise GatewayError(
            "upstream_error",
            f"The call to {provider} was refused: its address is not allowed by the "
            "outbound network policy (OUTBOUND_ALLOWED_NETWORKS).",
            retryable=True,  # another deployment of the model may be allowed
        ) from exc
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
    idle = timeouts.idle if stream and resp.status == 200 else None
    return UpstreamResponse(
        resp.status, dict(resp.headers), _body(provider, resp, idle), resp.close
    )


class _IdleWatchdog:
    """Closes a stream that has been silent for `idle` seconds.

    One timer per stream that re-arms itself, rather than a timeout around every read, so a
    busy stream pays one clock read per chunk.
    """

    def __init__(self, resp: aiohttp.ClientResponse, idle: float) -> None:
        self.resp, self.idle = resp, idle
        self.last = time.monotonic()
        self.fired = False
        self._timer = asyncio.get_running_loop().call_later(idle, self._check)

    def _check(self) -> None:
        silent = time.monotonic() - self.last
        if silent >= self.idle:
            self.fired = True
            self.resp.close()
        else:
            self._timer = asyncio.get_running_loop().call_later(self.idle - silent, self._check)

    def cancel(self) -> None:
        self._timer.cancel()


async def _body(
    provider: str, resp: aiohttp.ClientResponse, idle: float | None
) -> AsyncIterator[bytes]:
    watchdog = _IdleWatchdog(resp, idle) if idle else None
    try:
        async for chunk in resp.content.iter_any():
            if watchdog is not None:
                watchdog.last = time.monotonic()
            yield chunk
        if watchdog is not None and watchdog.fired:
            raise _stalled(provider, idle)
    except TimeoutError as exc:
        raise GatewayError("upstream_timeout", f"{provider} did not finish in time.") from exc
    except aiohttp.ClientError as exc:
        if watchdog is not None and watchdog.fired:
            raise _stalled(provider, idle) from exc
        raise GatewayError("upstream_error", f"The connection to {provider} broke.") from exc
    finally:
        if watchdog is not None:
            watchdog.cancel()
        resp.release()


def _stalled(provider: str, idle: float | None) -> GatewayError:
    return GatewayError("upstream_timeout", f"{provider} sent nothing for {idle:g} s mid-stream.")


async def close_all() -> None:
    for session in list(_sessions.values()):
        await session.close()
    _sessions.clear()

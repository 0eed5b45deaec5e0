"""GET /readyz: may this process take traffic? (/healthz only says it is alive.)

Checks: the database answers `SELECT 1`; in distributed mode Redis answers PING and the usage
stream's backlog (its length, and the entries read but not yet stored) is within
READY_MAX_USAGE_BACKLOG; and the process is not draining (gateway/drain.py), so the load
balancer stops sending to a process that is shutting down. 200 `{"status": "ready",
"checks": {...}}` or 503 `{"status": "not_ready", ...}` naming what failed. No usage event.
"""

from __future__ import annotations

import asyncio

import orjson
import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.db import connection

from billing.usage_stream import GROUP
from gateway import drain

CHECK_TIMEOUT_SECONDS = 2.0
OK = "ok"


async def readiness() -> dict[str, str]:
    """Each check's verdict: "ok" or why not."""
    checks = {"draining": "draining" if drain.state.draining else OK}
    checks["database"] = await _bounded(_database())
    if settings.DISTRIBUTED:
        checks.update(await _redis_checks())
    return checks


async def _bounded(check) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"timed out after {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure is the verdict
        return f"{type(exc).__name__}: {exc}"[:200]


@database_sync_to_async
def _database_select() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _database() -> str:
    await _database_select()
    return OK


async def _redis_checks() -> dict[str, str]:
    client = aioredis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        verdict = await _bounded(_ping(client))
        if verdict != OK:
            return {"redis": verdict}
        return {"redis": OK, "usage_backlog": await _bounded(_backlog(client))}
    finally:
        await client.aclose()


async def _ping(client) -> str:
    await client.ping()
    return OK


async def _backlog(client) -> str:
    key, bound = settings.USAGE_STREAM_KEY, settings.READY_MAX_USAGE_BACKLOG
    length = await client.xlen(key)
    try:
        pending = (await client.xpending(key, GROUP))["pending"]
    except redis.ResponseError:  # no group yet: nothing was read, nothing is pending
        pending = 0
    if length > bound or pending > bound:
        return f"{length} queued, {pending} pending; the bound is {bound}"
    return OK


class ReadyzConsumer(AsyncHttpConsumer):
    channel_layer_alias = "__none__"  # no per-request channel: no Redis round trip

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] not in ("GET", "HEAD"):
            await self._json(405, {"error": "Use GET."}, [(b"allow", b"GET, HEAD")])
            return
        checks = await readiness()
        ready = all(verdict == OK for verdict in checks.values())
        payload = {"status": "ready" if ready else "not_ready", "checks": checks}
        await self._json(200 if ready else 503, payload)

    async def _json(self, status: int, payload: dict, headers: list | None = None) -> None:
        data = b"" if self.scope["method"] == "HEAD" else orjson.dumps(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            *(headers or []),
        ]
        await self.send_response(status, data, headers=headers)

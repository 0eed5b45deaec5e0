"""Moving usage events from the Redis stream into the database, at least once, stored once.

Entries are read through a consumer group, stored (idempotent on request_id), and only then
acknowledged and deleted; entries a dead consumer left pending are reclaimed after a while.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import orjson
import redis
from django.conf import settings

from billing.services import usage_store_batch

log = logging.getLogger(__name__)

GROUP = "usage-writers"
RECLAIM_IDLE_MS = 60_000


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(settings.USAGE_STREAM_KEY, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def drain(
    *, max_seconds: float = 5.0, batch: int = 500, reclaim_idle_ms: int = RECLAIM_IDLE_MS
) -> int:
    """Store what the stream holds now; returns how many events were stored."""
    client = _client()
    ensure_group(client)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    stored = _store(client, _reclaim(client, consumer, batch, reclaim_idle_ms))
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        response = client.xreadgroup(GROUP, consumer, {settings.USAGE_STREAM_KEY: ">"}, count=batch)
        entries = response[0][1] if response else []
        if not entries:
            break
        stored += _store(client, entries)
    return stored


def _reclaim(client: redis.Redis, consumer: str, batch: int, idle_ms: int) -> list:
    _, entries, *_ = client.xautoclaim(
        settings.USAGE_STREAM_KEY,
        GROUP,
        consumer,
        min_idle_time=idle_ms,
        start_id="0-0",
        count=batch,
    )
    return [e for e in entries if e and e[1]]


def _store(client: redis.Redis, entries: list) -> int:
    if not entries:
        return 0
    rows, ids = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        try:
            rows.append(orjson.loads(fields[b"e"]))
        except (KeyError, orjson.JSONDecodeError):
            log.error("usage stream: dropping malformed entry %s", entry_id)
    usage_store_batch(rows=rows)  # raises if the database is away: nothing is acknowledged
    pipe = client.pipeline(transaction=False)
    pipe.xack(settings.USAGE_STREAM_KEY, GROUP, *ids)
    pipe.xdel(settings.USAGE_STREAM_KEY, *ids)
    pipe.execute()
    return len(rows)

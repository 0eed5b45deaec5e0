"""Moving usage events from the Redis stream into the database, at least once, stored once.

Entries are read through a consumer group, stored (idempotent on request_id), and only then
acknowledged and deleted. Each run first retries what this consumer read and could not store
(the database or Redis failed), then takes over entries a dead consumer left pending for
USAGE_RECLAIM_IDLE_MS, then reads new ones. When the database is away a run stops at once:
nothing is acknowledged, nothing more is read, and the next beat tries again.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import orjson
import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from billing.services import usage_store_batch

log = logging.getLogger(__name__)

GROUP = "usage-writers"


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(settings.USAGE_STREAM_KEY, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def drain(*, max_seconds: float = 5.0, batch: int = 500, reclaim_idle_ms: int | None = None) -> int:
    """Store what the stream holds now; returns how many events were stored."""
    if reclaim_idle_ms is None:
        reclaim_idle_ms = settings.USAGE_RECLAIM_IDLE_MS
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    deadline = time.monotonic() + max_seconds
    stored = 0
    try:
        client = _client()
        ensure_group(client)
        for entries in _own_pending(client, consumer, batch):
            stored += _store(client, entries)
        for entries in _reclaimed(client, consumer, batch, reclaim_idle_ms, deadline):
            stored += _store(client, entries)
        while time.monotonic() < deadline:
            key = settings.USAGE_STREAM_KEY
            response = client.xreadgroup(GROUP, consumer, {key: ">"}, count=batch)
            entries = response[0][1] if response else []
            if not entries:
                break
            stored += _store(client, entries)
    except (OperationalError, InterfaceError) as exc:
        # What was read stays pending on this consumer; a fresh connection next time.
        connection.close()
        log.warning("usage stream: database unavailable after %d events: %s", stored, exc)
    except redis.RedisError as exc:
        log.warning("usage stream: Redis unavailable after %d events: %r", stored, exc)
    return stored


def _own_pending(client: redis.Redis, consumer: str, batch: int):
    """Entries this consumer read earlier and never acknowledged, a page at a time."""
    after = "0"
    while True:
        response = client.xreadgroup(
            GROUP, consumer, {settings.USAGE_STREAM_KEY: after}, count=batch
        )
        entries = response[0][1] if response else []
        if not entries:
            return
        after = entries[-1][0]
        yield entries


def _reclaimed(client: redis.Redis, consumer: str, batch: int, idle_ms: int, deadline: float):
    """Entries other consumers left pending for idle_ms, claimed for this one."""
    cursor = "0-0"
    while time.monotonic() < deadline:
        cursor, entries, *_ = client.xautoclaim(
            settings.USAGE_STREAM_KEY,
            GROUP,
            consumer,
            min_idle_time=idle_ms,
            start_id=cursor,
            count=batch,
        )
        entries = [e for e in entries if e]
        if entries:
            yield entries
        if cursor in (b"0-0", "0-0"):
            return


def _store(client: redis.Redis, entries: list) -> int:
    if not entries:
        return 0
    rows, ids = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        if not fields:
            continue  # deleted from the stream while pending: only the acknowledgement is due
        try:
            rows.append((entry_id, _row(fields)))
        except (KeyError, ValueError):  # orjson.JSONDecodeError is a ValueError
            _dead_letter(client, entry_id, fields, "malformed entry")
    if rows:
        try:
            usage_store_batch(rows=[row for _, row in rows])
        except (OperationalError, InterfaceError):
            raise  # the database is away: nothing is acknowledged
        except Exception:
            # One bad event must not hold back the others: store them one by one.
            for entry_id, row in rows:
                try:
                    usage_store_batch(rows=[row])
                except (OperationalError, InterfaceError):
                    raise
                except Exception as exc:
                    event = {k: v for k, v in row.items() if k != "body"}
                    _dead_letter(client, entry_id, {b"e": orjson.dumps(event)}, repr(exc))
    pipe = client.pipeline(transaction=False)
    pipe.xack(settings.USAGE_STREAM_KEY, GROUP, *ids)
    pipe.xdel(settings.USAGE_STREAM_KEY, *ids)
    pipe.execute()
    return len(rows)


def _row(fields: dict) -> dict:
    """The event, with its compressed call bodies (data, size, cut) where it has some."""
    row = orjson.loads(fields[b"e"])
    if b"b" in fields:
        row["body"] = (fields[b"b"], int(fields.get(b"b_size", 0)), fields.get(b"b_cut") == b"1")
    return row


def _dead_letter(client: redis.Redis, entry_id, fields: dict, error: str) -> None:
    """Keep an event the store refuses for an operator, in the stream's `:dead` sibling."""
    log.error(
        "usage stream: entry %s not stored (%s), kept in %s:dead",
        entry_id,
        error,
        settings.USAGE_STREAM_KEY,
    )
    client.xadd(f"{settings.USAGE_STREAM_KEY}:dead", {**fields, b"error": error[:500]})

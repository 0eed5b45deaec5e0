"""What gateway processes share through Redis, in one batched call every REFRESH_SECONDS.

Read: the open breakers, and the other processes' in-flight counts and latency averages (the
inputs of least-busy and lowest-latency balancing). Written: this process's own, with a
heartbeat, so a process that dies stops counting within STALE_SECONDS. Requests that arrive
while the copy is fresh touch no network; concurrent requests that find it stale share one
call. Embedded mode has one process and nothing to share but the breakers' memory store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

from gateway import balance
from gateway.breaker import OPEN_KEY, RedisStore, breakers

REFRESH_SECONDS = 0.25
STALE_SECONDS = 2.0  # a process silent this long no longer counts
FORGET_SECONDS = 30.0  # ... and its fields are removed
BALANCE_KEY = "waystation:balance"  # hash: beat|proc, busy|proc|dep, ms|proc|dep
PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
log = logging.getLogger(__name__)

_synced_at = 0.0
_warned_at = 0.0
_syncing: asyncio.Future[None] | None = None


async def refresh() -> None:
    global _syncing, _synced_at
    if time.monotonic() - _synced_at < REFRESH_SECONDS:
        return
    if _syncing is None:
        _synced_at = time.monotonic()
        # Shielded in its own task: a caller that goes away must not cancel it for the others.
        _syncing = asyncio.ensure_future(_sync())
        _syncing.add_done_callback(_sync_done)
    await asyncio.shield(_syncing)


def _sync_done(_: asyncio.Future[None]) -> None:
    global _syncing
    _syncing = None


def reset() -> None:
    """Forget the local copy (tests, and a process that changed its Redis)."""
    global _synced_at, _syncing
    _synced_at, _syncing = 0.0, None
    balance.remote_busy.clear()
    balance.remote_latency_ms.clear()


async def _sync() -> None:
    try:
        await _exchange()
    except Exception as exc:  # noqa: BLE001 - Redis away: keep serving on the last copy
        global _warned_at
        if time.monotonic() - _warned_at > 10:
            _warned_at = time.monotonic()
            log.warning("shared routing state: Redis unreachable (%s); using the last copy", exc)


async def _exchange() -> None:
    health = breakers()
    store = health.store
    if not isinstance(store, RedisStore):
        health.open = await store.snapshot()
        return
    now = time.time()
    mine = {f"beat|{PROCESS}": now}
    mine.update({f"busy|{PROCESS}|{dep}": n for dep, n in balance.in_flight.items()})
    mine.update({f"ms|{PROCESS}|{dep}": ms for dep, ms in balance.latency_ms.items()})
    async with store.client().pipeline(transaction=False) as pipe:
        pipe.hgetall(OPEN_KEY)
        pipe.hset(BALANCE_KEY, mapping=mine)
        pipe.expire(BALANCE_KEY, int(FORGET_SECONDS) * 2)
        pipe.hgetall(BALANCE_KEY)
        opened, _, _, shared = await pipe.execute()
    health.open = {k.decode(): float(v) for k, v in opened.items()}
    forget = _merge_others(shared, now)
    if forget:
        await store.client().hdel(BALANCE_KEY, *forget)


def _merge_others(shared: dict[bytes, bytes], now: float) -> list[bytes]:
    """Sum the other live processes' in-flight counts, average their latencies.

    Returns the fields of processes gone for FORGET_SECONDS, to delete.
    """
    beats: dict[str, float] = {}
    rows: list[tuple[bytes, str, str, str, float]] = []
    for raw_field, raw_value in shared.items():
        what, _, rest = raw_field.decode().partition("|")
        if what == "beat":
            beats[rest] = float(raw_value)
        else:
            proc, _, dep = rest.partition("|")
            rows.append((raw_field, what, proc, dep, float(raw_value)))
    busy: dict[str, int] = {}
    latency: dict[str, list[float]] = {}
    forget = [f"beat|{p}".encode() for p, beat in beats.items() if beat < now - FORGET_SECONDS]
    for raw_field, what, proc, dep, value in rows:
        beat = beats.get(proc, 0.0)
        if beat < now - FORGET_SECONDS:
            forget.append(raw_field)
        if proc == PROCESS or beat < now - STALE_SECONDS:
            continue
        if what == "busy":
            busy[dep] = busy.get(dep, 0) + int(value)
        elif what == "ms":
            latency.setdefault(dep, []).append(value)
    balance.remote_busy.clear()
    balance.remote_busy.update(busy)
    balance.remote_latency_ms.clear()
    balance.remote_latency_ms.update({d: sum(v) / len(v) for d, v in latency.items()})
    return forget

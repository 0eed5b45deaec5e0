"""Where cache entries live: Redis in distributed mode (shared by every gateway process),
this process's memory in the embedded default. Both bound what they hold.

Two kinds of record:
* entries: the answer, under a key, with a TTL;
* logs: per semantic partition, an append-only list of (entry key, vector, cache text) that
  each process mirrors into its own vector index, reading only what is new since its last read.
  A log keeps at most `max_entries`; adding past that drops the oldest and their entries.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

LogId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class LogItem:
    log_id: LogId
    entry_key: str
    vector: bytes
    text: str


class CacheStore(Protocol):
    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def put(self, key: str, value: bytes, ttl: int) -> None: ...

    async def append(
        self, log: str, item_key: str, vector: bytes, text: str, value: bytes, ttl: int, cap: int
    ) -> None:
        """Store the entry and log it; past `cap` logged items, the oldest go, entries too."""

    async def read_log(self, log: str, after: LogId | None) -> tuple[list[LogItem], LogId | None]:
        """Items logged after `after` (all, if None), and the oldest id the log still holds."""

    async def purge(self, prefix: str) -> int: ...


# KEYS[1] log, KEYS[2] entry; ARGV: vector, text, value, ttl, cap, key prefix of entries.
APPEND = """
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('XADD', KEYS[1], '*', 'k', KEYS[2], 'v', ARGV[1], 't', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  for _, item in ipairs(old) do
    redis.call('UNLINK', item[2][2])
    redis.call('XDEL', KEYS[1], item[1])
  end
end
return excess
"""

READ_BATCH = 2_000


def _parse_id(raw: bytes) -> LogId:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class RedisCacheStore:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis
        self._url = url
        self._clients: dict[int, tuple[object, object]] = {}

    def _client(self):
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            # A cache that is slow to answer must cost a request little: it becomes a miss.
            client = self._redis.Redis.from_url(
                self._url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._clients[loop_id] = (client, client.register_script(APPEND))
        return self._clients[loop_id]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        client, _ = self._client()
        return await client.mget(keys)

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        client, _ = self._client()
        await client.set(key, value, ex=ttl)

    async def append(
        self, log: str, item_key: str, vector: bytes, text: str, value: bytes, ttl: int, cap: int
    ) -> None:
        _, script = self._client()
        await script(keys=[log, item_key], args=[vector, text, value, ttl, cap])

    async def read_log(self, log: str, after: LogId | None) -> tuple[list[LogItem], LogId | None]:
        client, _ = self._client()
        start = f"({after[0]}-{after[1]}" if after else "-"
        items: list[LogItem] = []
        async with client.pipeline(transaction=False) as pipe:
            pipe.xrange(log, "-", "+", count=1)
            pipe.xrange(log, start, "+", count=READ_BATCH)
            first, batch = await pipe.execute()
        while batch:
            items += [
                LogItem(_parse_id(i), f[b"k"].decode(), f[b"v"], f[b"t"].decode()) for i, f in batch
            ]
            if len(batch) < READ_BATCH:
                break
            last = items[-1].log_id
            batch = await client.xrange(log, f"({last[0]}-{last[1]}", "+", count=READ_BATCH)
        return items, (_parse_id(first[0][0]) if first else None)

    async def purge(self, prefix: str) -> int:
        client, _ = self._client()
        removed = 0
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            removed += await client.unlink(key)
        return removed


class MemoryCacheStore:
    """One process's cache: least recently used entries go past `max_items`."""

    def __init__(self, max_items: int) -> None:
        self._max_items = max_items
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._logs: OrderedDict[str, list[LogItem]] = OrderedDict()
        self._logged = 0  # items in all logs: bounded by max_items too
        self._sequence = 0

    def _live(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[1] < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return found[0]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        self._entries[key] = (value, time.monotonic() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_items:
            self._entries.popitem(last=False)

    async def append(
        self, log: str, item_key: str, vector: bytes, text: str, value: bytes, ttl: int, cap: int
    ) -> None:
        await self.put(item_key, value, ttl)
        self._sequence += 1
        items = self._logs.setdefault(log, [])
        self._logs.move_to_end(log)
        items.append(LogItem((self._sequence, 0), item_key, vector, text))
        self._logged += 1
        if len(items) > cap:
            self._drop(items, len(items) - cap)
        while self._logged > self._max_items:  # the least recently written log goes first
            _, oldest = self._logs.popitem(last=False)
            self._drop(oldest, len(oldest))

    def _drop(self, items: list[LogItem], count: int) -> None:
        for old in items[:count]:
            self._entries.pop(old.entry_key, None)
        del items[:count]
        self._logged -= count

    async def read_log(self, log: str, after: LogId | None) -> tuple[list[LogItem], LogId | None]:
        items = self._logs.get(log, [])
        start = 0 if after is None else bisect.bisect_right(items, after, key=lambda i: i.log_id)
        return items[start:], (items[0].log_id if items else None)

    async def purge(self, prefix: str) -> int:
        doomed = [k for k in self._entries if k.startswith(prefix)]
        logs = [k for k in self._logs if k.startswith(prefix)]
        for key in doomed:
            del self._entries[key]
        for key in logs:
            self._logged -= len(self._logs.pop(key))
        return len(doomed) + len(logs)

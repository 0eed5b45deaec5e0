"""Where rate limits and budgets are counted: one Lua call in Redis, or memory per process.

Every check of a request runs as one script, so a request is admitted against all its limits
at once or against none (no partial charges), in one round trip:

- `g` GCRA for requests and tokens per minute: the key holds the theoretical arrival time; a
  request costing n units moves it n * 60 s / limit ahead, and is refused if that would put it
  more than 60 s past now. Tokens are settled afterwards by the difference to the estimate.
- `c` concurrent requests: a sorted set of request ids by start time (ids older than
  CONCURRENCY_TTL_MS are dropped, so a crashed process can't hold a slot forever).
- `b` budgets: nanodollars spent plus reserved in the period; a request is admitted while the
  total is under the amount and reserves its estimated cost, settled to the real cost later.
  A missing counter is reported so the caller can seed it from the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

WINDOW_MS = 60_000
# The counters, as the script names them.
RATE, SLOTS, SPEND = "g", "c", "b"
CONCURRENCY_TTL_MS = 600_000

ADMIT = """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local checks = {}
for counter, limit, cost, extra in string.gmatch(ARGV[3], "(%a),([^,]*),([^,]*),([^;]*);") do
  table.insert(checks, {counter, tonumber(limit), tonumber(cost), extra})
end
local ok_all, out, plans = 1, {}, {}
for i, c in ipairs(checks) do
  local counter, limit, cost, key = c[1], c[2], c[3], KEYS[i]
  local ok, retry, remaining, reset = 1, 0, 0, 0
  if counter == 'g' then
    local step = 60000 / limit
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local next_tat = tat + cost * step
    if next_tat - now > 60000 then
      ok, retry = 0, math.ceil(next_tat - now - 60000)
      remaining, reset = math.floor((60000 - (tat - now)) / step), math.ceil(tat - now)
    else
      plans[i] = next_tat
      remaining, reset = math.floor((60000 - (next_tat - now)) / step), math.ceil(next_tat - now)
    end
  elseif counter == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, 0, now - ttl)
    local count = redis.call('ZCARD', key)
    if count >= limit then ok, retry = 0, 1000 else remaining = limit - count - 1 end
  else
    local spent = redis.call('GET', key)
    if not spent then return 'S' .. i end
    if tonumber(spent) >= limit then ok, retry = 0, tonumber(c[4]) end
    remaining = limit - tonumber(spent)
  end
  if ok == 0 then ok_all = 0 end
  out[i] = string.format('%d,%d,%d,%d', ok, retry, remaining, reset)
end
if ok_all == 1 then
  for i, c in ipairs(checks) do
    local counter, cost = c[1], c[3]
    if counter == 'g' then
      redis.call('SET', KEYS[i], plans[i], 'PX', math.ceil(plans[i] - now) + 1000)
    elseif counter == 'c' then
      redis.call('ZADD', KEYS[i], now, c[4])
      redis.call('PEXPIRE', KEYS[i], ttl)
    elseif cost > 0 then
      redis.call('INCRBY', KEYS[i], cost)
    end
  end
end
return table.concat(out, ';')
"""

SETTLE = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local counter, limit, delta = ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
  if counter == 'g' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    local moved = tat + tonumber(delta) * 60000 / limit
    if moved > now then
      redis.call('SET', KEYS[i], moved, 'PX', math.ceil(moved - now) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  elseif counter == 'c' then
    redis.call('ZREM', KEYS[i], delta)
  elseif tonumber(delta) ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to admit against. `extra`: a request id (c) or a retry hint in ms (b)."""

    counter: str  # RATE | SLOTS | SPEND
    key: str
    limit: int
    cost: int
    extra: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    retry_ms: int
    remaining: int
    reset_ms: int


class NeedsSeed(Exception):  # noqa: N818 - a signal, not an error
    def __init__(self, check: Check) -> None:
        super().__init__(check.key)
        self.check = check


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis
        self._url = url
        self._clients: dict[int, object] = {}
        self._scripts: dict[int, tuple[object, object]] = {}

    def _client(self):
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            client = self._redis.Redis.from_url(self._url)
            self._clients[loop_id] = client
            self._scripts[loop_id] = (
                client.register_script(ADMIT),
                client.register_script(SETTLE),
            )
        return self._clients[loop_id], self._scripts[loop_id]

    async def admit(self, checks: list[Check], now_ms: int) -> list[Verdict]:
        # The checks travel as one string and the verdicts come back as one: encoding and
        # parsing dozens of separate values costs more in redis-py than the script itself.
        _, (admit, _settle) = self._client()
        packed = "".join(f"{c.counter},{c.limit},{c.cost},{c.extra or 0};" for c in checks)
        raw = await admit(keys=[c.key for c in checks], args=[now_ms, CONCURRENCY_TTL_MS, packed])
        if raw.startswith(b"S"):
            raise NeedsSeed(checks[int(raw[1:]) - 1])
        return _verdicts(raw)

    async def settle(self, items: list[tuple[Check, int | str]], now_ms: int) -> None:
        _, (_admit, settle) = self._client()
        args: list[object] = [now_ms]
        for check, delta in items:
            args += [check.counter, check.limit, delta]
        await settle(keys=[c.key for c, _ in items], args=args)

    async def seed(self, key: str, value: int, ttl_seconds: int | None) -> None:
        client, _ = self._client()
        await client.set(key, value, nx=True, ex=ttl_seconds)


class MemoryCounters:
    """The same rules for one process: the embedded mode, and Redis being away (fail open)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.sets: dict[str, dict[str, int]] = {}

    async def admit(self, checks: list[Check], now_ms: int) -> list[Verdict]:
        verdicts, plans = [], {}
        for c in checks:
            if c.counter == RATE:
                step = WINDOW_MS / c.limit
                tat = max(self.values.get(c.key, now_ms), now_ms)
                nxt = tat + c.cost * step
                if nxt - now_ms > WINDOW_MS:
                    left = int((WINDOW_MS - (tat - now_ms)) / step)
                    verdicts.append(Verdict(False, int(nxt - now_ms - WINDOW_MS) + 1, left, 0))
                    continue
                plans[c.key] = nxt
                left = int((WINDOW_MS - (nxt - now_ms)) / step)
                verdicts.append(Verdict(True, 0, left, int(nxt - now_ms) + 1))
            elif c.counter == SLOTS:
                live = self.sets.setdefault(c.key, {})
                for rid in [r for r, t in live.items() if t < now_ms - CONCURRENCY_TTL_MS]:
                    del live[rid]
                ok = len(live) < c.limit
                verdicts.append(Verdict(ok, 0 if ok else 1000, c.limit - len(live) - ok, 0))
            else:
                spent = self.values.get(c.key)
                if spent is None:
                    raise NeedsSeed(c)
                ok = spent < c.limit
                verdicts.append(Verdict(ok, 0 if ok else int(c.extra), int(c.limit - spent), 0))
        if all(v.ok for v in verdicts):
            for c in checks:
                if c.counter == RATE:
                    self.values[c.key] = plans[c.key]
                elif c.counter == SLOTS:
                    self.sets[c.key][c.extra] = now_ms
                else:
                    self.values[c.key] += c.cost
        return verdicts

    async def settle(self, items: list[tuple[Check, int | str]], now_ms: int) -> None:
        for check, delta in items:
            if check.counter == RATE:
                moved = self.values.get(check.key, now_ms) + int(delta) * WINDOW_MS / check.limit
                self.values[check.key] = max(moved, now_ms)
            elif check.counter == SLOTS:
                self.sets.get(check.key, {}).pop(str(delta), None)
            elif check.key in self.values:
                self.values[check.key] += int(delta)

    async def seed(self, key: str, value: int, ttl_seconds: int | None) -> None:
        self.values.setdefault(key, value)


def _verdicts(raw: bytes) -> list[Verdict]:
    verdicts = []
    for item in raw.split(b";"):
        ok, retry, remaining, reset = item.split(b",")
        verdicts.append(Verdict(ok == b"1", int(retry), int(remaining), int(reset)))
    return verdicts


def now_ms() -> int:
    return int(time.time() * 1000)

"""Circuit breakers per deployment, shared by every gateway process.

After `failures` retryable failures within `window` seconds a deployment is open (skipped) for
`cooldown` seconds; then one probe request, claimed by one process only, decides whether it
closes again (half-open). The hot path reads a local copy of the open breakers that
gateway.shared refreshes from Redis every 0.25 s (one batched call, with the balance inputs),
so a healthy request costs no round trip of its own; only failures and probes talk to Redis.
Embedded mode keeps the same state in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)
OPEN_KEY = "waystation:breakers:open"  # hash: deployment -> open-until (unix time)


@dataclass(frozen=True)
class Policy:
    failures: int
    window: float
    cooldown: float


def policy() -> Policy:
    return Policy(
        settings.GATEWAY_BREAKER_FAILURES,
        settings.GATEWAY_BREAKER_WINDOW_SECONDS,
        settings.GATEWAY_BREAKER_COOLDOWN_SECONDS,
    )


class MemoryStore:
    def __init__(self) -> None:
        self.failures: dict[str, list[float]] = {}
        self.open: dict[str, float] = {}
        self.probes: dict[str, float] = {}

    async def fail(self, dep: str, now: float, rule: Policy) -> bool:
        recent = [t for t in self.failures.get(dep, []) if t > now - rule.window] + [now]
        self.failures[dep] = recent
        if len(recent) >= rule.failures:
            self.open[dep] = now + rule.cooldown
            self.failures[dep] = []
            return True
        return False

    async def close(self, dep: str) -> None:
        self.open.pop(dep, None)
        self.failures.pop(dep, None)
        self.probes.pop(dep, None)

    async def claim_probe(self, dep: str, now: float, rule: Policy) -> bool:
        if self.probes.get(dep, 0) > now:
            return False
        self.probes[dep] = now + rule.cooldown
        return True

    async def snapshot(self) -> dict[str, float]:
        return dict(self.open)

    async def force_open(self, dep: str, until: float) -> None:
        self.open[dep] = until


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis
        self._url = url
        self._clients: dict[int, object] = {}

    def client(self):
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            self._clients[loop_id] = self._redis.Redis.from_url(self._url)
        return self._clients[loop_id]

    async def fail(self, dep: str, now: float, rule: Policy) -> bool:
        key = f"waystation:breakers:fails:{dep}"
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{now}:{id(pipe)}": now})
            pipe.zremrangebyscore(key, 0, now - rule.window)
            pipe.zcard(key)
            pipe.expire(key, int(rule.window) + 1)
            _, _, count, _ = await pipe.execute()
        if count >= rule.failures:
            async with self.client().pipeline(transaction=True) as pipe:
                pipe.hset(OPEN_KEY, dep, now + rule.cooldown)
                pipe.delete(key)
                await pipe.execute()
            return True
        return False

    async def close(self, dep: str) -> None:
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.hdel(OPEN_KEY, dep)
            pipe.delete(f"waystation:breakers:fails:{dep}", f"waystation:breakers:probe:{dep}")
            await pipe.execute()

    async def claim_probe(self, dep: str, now: float, rule: Policy) -> bool:
        ttl = max(1, int(rule.cooldown))
        return bool(await self.client().set(f"waystation:breakers:probe:{dep}", 1, nx=True, ex=ttl))

    async def snapshot(self) -> dict[str, float]:
        raw = await self.client().hgetall(OPEN_KEY)
        return {k.decode(): float(v) for k, v in raw.items()}

    async def force_open(self, dep: str, until: float) -> None:
        await self.client().hset(OPEN_KEY, dep, until)


class Breakers:
    def __init__(self, store: MemoryStore | RedisStore) -> None:
        self.store = store
        # Local copy, deployment -> open until; gateway.shared keeps it fresh.
        self.open: dict[str, float] = {}

    async def allows(self, dep: str) -> bool:
        """Closed: yes. Open: no. Cooled down (half-open): yes for the one probe claimed."""
        until = self.open.get(dep)
        if until is None:
            return True
        now = time.time()
        if until > now:
            return False
        try:
            return await self.store.claim_probe(dep, now, policy())
        except Exception as exc:  # noqa: BLE001 - Redis away: let the probe through
            _unreachable(exc)
            return True

    async def record(self, dep: str, ok: bool) -> None:
        try:
            await self._record(dep, ok)
        except Exception as exc:  # noqa: BLE001 - Redis away: the answer matters more
            _unreachable(exc)

    async def _record(self, dep: str, ok: bool) -> None:
        if ok:
            if dep in self.open:
                self.open.pop(dep, None)
                await self.store.close(dep)
            return
        now, rule = time.time(), policy()
        if dep in self.open:  # the half-open probe failed: open again at once
            self.open[dep] = now + rule.cooldown
            await self.store.force_open(dep, now + rule.cooldown)
        elif await self.store.fail(dep, now, rule):
            self.open[dep] = now + rule.cooldown


_breakers: Breakers | None = None
_warned_at = 0.0


def _unreachable(exc: Exception) -> None:
    global _warned_at
    if time.monotonic() - _warned_at > 10:
        _warned_at = time.monotonic()
        log.warning("circuit breakers: Redis unreachable (%s); not counting for now", exc)


def breakers() -> Breakers:
    global _breakers
    if _breakers is None:
        store = RedisStore(settings.REDIS_URL) if settings.DISTRIBUTED else MemoryStore()
        _breakers = Breakers(store)
    return _breakers


# --- the operator's view (sync: called from portal pages) ----------------------------

DRAIN_SECONDS = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class Health:
    state: str  # closed | open | half-open | drained
    open_until: float | None
    recent_failures: int


def health_report(deployments: list[str]) -> dict[str, Health]:
    now = time.time()
    if settings.DISTRIBUTED:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        opened = {k.decode(): float(v) for k, v in client.hgetall(OPEN_KEY).items()}
        window = now - policy().window
        failures = {
            d: client.zcount(f"waystation:breakers:fails:{d}", window, now) for d in deployments
        }
    else:
        store = breakers().store
        opened = dict(store.open)
        failures = {
            d: len([t for t in store.failures.get(d, []) if t > now - policy().window])
            for d in deployments
        }
    return {d: _health(opened.get(d), failures.get(d, 0), now) for d in deployments}


def _health(until: float | None, failures: int, now: float) -> Health:
    if until is None:
        return Health("closed", None, failures)
    if until - now > DRAIN_SECONDS / 2:
        return Health("drained", None, failures)
    return Health("open" if until > now else "half-open", until, failures)


def set_drained(dep: str, drained: bool) -> None:
    """Take a deployment out of rotation by hand (an open breaker that doesn't cool down)."""
    if settings.DISTRIBUTED:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        if drained:
            client.hset(OPEN_KEY, dep, time.time() + DRAIN_SECONDS)
        else:
            client.hdel(OPEN_KEY, dep)
            client.delete(f"waystation:breakers:fails:{dep}", f"waystation:breakers:probe:{dep}")
        return
    store = breakers().store
    if drained:
        store.open[dep] = time.time() + DRAIN_SECONDS
    else:
        store.open.pop(dep, None)
        store.failures.pop(dep, None)
        store.probes.pop(dep, None)
    breakers().open = dict(store.open)

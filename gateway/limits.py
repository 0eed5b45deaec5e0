"""Rate limits, quotas and budgets on the hot path: one counters call admits a request against
all of them, and its real tokens and cost settle the counters when it ends.

Which limits apply comes with the key (gateway.auth loads them with it); the counters live in
Redis (gateway.limits_store), or in memory in embedded mode. If Redis can't be reached the
operator's setting decides: fail open onto per-process counters (the default) or refuse with
503; either way it is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway.errors import GatewayError
from gateway.limits_store import (
    RATE,
    SLOTS,
    SPEND,
    Check,
    MemoryCounters,
    NeedsSeed,
    RedisCounters,
    Verdict,
    now_ms,
)

log = logging.getLogger(__name__)

NANO = Decimal(1_000_000_000)  # budgets count nanodollars: integers, exact for any price


@dataclass(frozen=True, slots=True)
class LimitSpec:
    scope: str  # "t<id>", "a<id>" or "k<id>": whose
    label: str  # for messages: "key 'ci'", "application 'web'", "tenant 'acme'"
    model: str = ""  # only this public model, or all
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    key: str  # counter name: "b<budget id>", or "kb<key id>" for a key's own monthly budget
    label: str  # "monthly budget of application 'web' ($50.00)"
    period: str  # daily | monthly | total
    amount_nano: int
    tenant_id: int
    application_id: int | None = None
    api_key_id: int | None = None


@dataclass
class Ticket:
    """What a request was admitted with; settled once, when its usage event is emitted."""

    request_id: str
    checks: list[Check]
    verdicts: list[Verdict]
    estimated_tokens: int
    estimated_nano: int
    settled: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def settle(self, tokens: int | None, cost: Decimal | None) -> None:
        if self.settled:
            return
        self.settled = True
        actual_nano = to_nano(cost) if cost is not None else 0
        items: list[tuple[Check, int | str]] = []
        for check in self.checks:
            if check.counter == RATE and check.key.endswith(":t"):
                used = tokens if tokens is not None else self.estimated_tokens
                if used != self.estimated_tokens:
                    items.append((check, used - self.estimated_tokens))
            elif check.counter == SLOTS:
                items.append((check, check.extra))
            elif check.counter == SPEND and actual_nano != check.cost:
                items.append((check, actual_nano - check.cost))
        if items:
            _settler.add(items)


# --- what applies to a key (read with it by gateway.auth) -----------------------------


def _label(tenant_id: int, application_id: int | None, key_id: int | None, key: Any) -> str:
    if key_id is not None:
        return f"key '{key.name}'"
    if application_id is not None:
        return f"application '{key.application.name}'"
    return f"tenant '{key.tenant.slug}'"


def specs_for_key(key: Any) -> tuple[tuple[LimitSpec, ...], tuple[BudgetSpec, ...]]:
    """The limits and hard budgets an API key's calls count against (read with the key)."""
    from billing.controls import controls_for_key

    rules, budgets = controls_for_key(key)
    return _limits_of(key, rules), _budgets_of(key, budgets)


def _limits_of(key: Any, rules: list) -> tuple[LimitSpec, ...]:
    specs = [
        LimitSpec(
            scope=f"k{r.api_key_id}"
            if r.api_key_id
            else f"a{r.application_id}"
            if r.application_id
            else f"t{r.tenant_id}",
            label=_label(r.tenant_id, r.application_id, r.api_key_id, key),
            model=r.model,
            rpm=r.requests_per_minute,
            tpm=r.tokens_per_minute,
            concurrent=r.concurrent,
        )
        for r in rules
    ]
    if key.requests_per_minute or key.tokens_per_minute:  # set on the key itself
        specs.append(
            LimitSpec(
                f"k{key.pk}",
                f"key '{key.name}'",
                rpm=key.requests_per_minute,
                tpm=key.tokens_per_minute,
            )
        )
    return tuple(specs)


def _budgets_of(key: Any, budgets: list) -> tuple[BudgetSpec, ...]:
    specs = [
        BudgetSpec(
            key=f"b{b.pk}",
            label=f"{b.period} budget of {_label(b.tenant_id, b.application_id, b.api_key_id, key)}"
            f" (${b.amount_usd:.2f})",
            period=b.period,
            amount_nano=to_nano(b.amount_usd),
            tenant_id=b.tenant_id,
            application_id=b.application_id,
            api_key_id=b.api_key_id,
        )
        for b in budgets
        if b.hard
    ]
    if key.monthly_budget_usd:
        specs.append(
            BudgetSpec(
                f"kb{key.pk}",
                f"monthly budget of key '{key.name}' (${key.monthly_budget_usd:.2f})",
                "monthly",
                to_nano(key.monthly_budget_usd),
                key.tenant_id,
                api_key_id=key.pk,
            )
        )
    return tuple(specs)


# --- admission -------------------------------------------------------------------------


async def admit(
    *,
    request_id: str,
    limits: tuple[LimitSpec, ...],
    budgets: tuple[BudgetSpec, ...],
    model: str,
    estimated_tokens: int,
    estimated_cost: Decimal,
) -> Ticket | None:
    """Charge the request against every limit that applies, or raise 429 naming the one hit."""
    checks = _checks(request_id, limits, budgets, model, estimated_tokens, estimated_cost)
    if not checks:
        return None
    verdicts = await _admit(checks, budgets)
    ticket = Ticket(request_id, checks, verdicts, estimated_tokens, to_nano(estimated_cost))
    ticket.headers = _headers(checks, verdicts)
    for check, verdict in zip(checks, verdicts, strict=True):
        if not verdict.ok:
            raise _refusal(check, verdict, limits, budgets, ticket.headers)
    return ticket


def _checks(
    request_id: str,
    limits: tuple[LimitSpec, ...],
    budgets: tuple[BudgetSpec, ...],
    model: str,
    tokens: int,
    cost: Decimal,
) -> list[Check]:
    checks = []
    for spec in limits:
        if spec.model and spec.model != model:
            continue
        base = f"waystation:rl:{spec.scope}:{spec.model or '*'}"
        if spec.rpm:
            checks.append(Check(RATE, f"{base}:r", spec.rpm, 1))
        if spec.tpm:
            if tokens > spec.tpm:
                raise GatewayError(
                    "rate_limit",
                    f"This request (about {tokens} tokens) is larger than the {spec.tpm} tokens "
                    f"per minute allowed for {spec.label}; send fewer tokens or lower max_tokens.",
                    code="request_too_large",
                )
            checks.append(Check(RATE, f"{base}:t", spec.tpm, tokens))
        if spec.concurrent:
            checks.append(Check(SLOTS, f"{base}:c", spec.concurrent, 0, request_id))
    for budget in budgets:
        start, end = _period(budget.period)
        key = f"waystation:budget:{budget.key}:{int(start.timestamp()) if start else 'all'}"
        retry_ms = int((end.timestamp() - time.time()) * 1000) if end else 0
        checks.append(Check(SPEND, key, budget.amount_nano, to_nano(cost), str(retry_ms)))
    return checks


async def _admit(checks: list[Check], budgets: tuple[BudgetSpec, ...]) -> list[Verdict]:
    store = _store()
    for _ in range(len(budgets) + 1):
        try:
            return await store.admit(checks, now_ms())
        except NeedsSeed as missing:
            await _seed(store, missing.check, budgets)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: the operator's policy
            store = _unreachable(exc)
    return await store.admit(checks, now_ms())


async def _seed(store: Any, check: Check, budgets: tuple[BudgetSpec, ...]) -> None:
    """A budget counter Redis doesn't have (new period, Redis restarted): from the database."""
    from billing.controls import spent_since

    budget = next(b for b in budgets if check.key.startswith(f"waystation:budget:{b.key}:"))
    start, end = _period(budget.period)
    spent = await sync_to_async(spent_since, thread_sensitive=False)(
        tenant_id=budget.tenant_id,
        application_id=budget.application_id,
        api_key_id=budget.api_key_id,
        since=start,
    )
    ttl = int(end.timestamp() - time.time()) + 86400 if end else None
    await store.seed(check.key, to_nano(spent), ttl)


def _refusal(
    check: Check,
    verdict: Verdict,
    limits: tuple[LimitSpec, ...],
    budgets: tuple[BudgetSpec, ...],
    headers: list[tuple[bytes, bytes]],
) -> GatewayError:
    retry = verdict.retry_ms / 1000 if verdict.retry_ms else None
    if check.counter == SPEND:
        budget = next(b for b in budgets if check.key.startswith(f"waystation:budget:{b.key}:"))
        err = GatewayError(
            "rate_limit",
            f"The {budget.label} is used up; calls are blocked until it resets or is raised.",
            code="budget_exceeded",
            retry_after=retry,
        )
    else:
        spec = next(s for s in limits if check.key.startswith(f"waystation:rl:{s.scope}:"))
        what = {"r": "requests per minute", "t": "tokens per minute", "c": "concurrent requests"}
        kind = what[check.key[-1]]
        err = GatewayError(
            "rate_limit",
            f"Rate limit reached for {spec.label}{f' on {spec.model}' if spec.model else ''}: "
            f"{check.limit} {kind}. Retry after {max(retry or 0, 0.001):.3g} s.",
            code="rate_limit_exceeded",
            retry_after=retry,
        )
    err.headers = headers
    return err


def _headers(checks: list[Check], verdicts: list[Verdict]) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers, from the tightest requests and tokens limits."""
    out = []
    for suffix, name in ((":r", b"requests"), (":t", b"tokens")):
        pairs = [(c, v) for c, v in zip(checks, verdicts, strict=True) if c.key.endswith(suffix)]
        if not pairs:
            continue
        check, verdict = min(pairs, key=lambda pair: pair[1].remaining)
        out += [
            (b"x-ratelimit-limit-" + name, str(check.limit).encode()),
            (b"x-ratelimit-remaining-" + name, str(max(verdict.remaining, 0)).encode()),
            (b"x-ratelimit-reset-" + name, _duration(verdict.reset_ms).encode()),
        ]
    return out


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{int(minutes)}m{seconds:.0f}s" if minutes else f"{seconds:.3g}s"


def _period(period: str) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(UTC)
    if period == "daily":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    if period == "monthly":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start, start.replace(year=year, month=month)
    return None, None


def to_nano(amount: Decimal) -> int:
    return int((amount * NANO).to_integral_value(rounding="ROUND_CEILING"))


# --- where the counters live ---------------------------------------------------------

_redis: RedisCounters | None = None
_memory = MemoryCounters()
_warned_at = 0.0


def _store() -> RedisCounters | MemoryCounters:
    global _redis
    if not settings.DISTRIBUTED:
        return _memory
    if _redis is None:
        _redis = RedisCounters(settings.REDIS_URL)
    return _redis


def _unreachable(exc: Exception) -> MemoryCounters:
    global _warned_at
    if time.monotonic() - _warned_at > 10:
        _warned_at = time.monotonic()
        mode = "open (per-process limits)" if settings.GATEWAY_LIMITS_FAIL_OPEN else "closed"
        log.warning("rate limiter: Redis unreachable (%s); failing %s", exc, mode)
    if not settings.GATEWAY_LIMITS_FAIL_OPEN:
        raise GatewayError("overloaded", "Rate limiting is unavailable; try again shortly.")
    return _memory


class _Settler:
    """Settlements sent off the hot path, in one call for all that one turn of the event loop
    gathered (many under load), so a released slot is free again within a round trip."""

    def __init__(self) -> None:
        self.items: list[tuple[Check, int | str]] = []
        self.scheduled = False

    def add(self, items: list[tuple[Check, int | str]]) -> None:
        self.items += items
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.flush()))

    async def flush(self) -> None:
        items, self.items, self.scheduled = self.items, [], False
        if not items:
            return
        try:
            await _store().settle(items, now_ms())
        except Exception as exc:  # noqa: BLE001
            try:
                await _unreachable(exc).settle(items, now_ms())
            except GatewayError:
                pass  # failing closed: nothing to settle into


_settler = _Settler()


async def flush() -> None:
    await _settler.flush()

"""What the analytics pages show, as queries over usage events: a series per hour or day,
breakdowns by model, provider, application, key or tenant, top consumers, and the comparison
with the previous period of the same length.

Every function takes a queryset of `billing.UsageEvent`, already scoped by the caller (a
tenant's own events, or all of them for the operator), so scoping is decided once, in the
view, and nothing here can widen it.

Where the figures come from:

- Everything shown beside a latency percentile (series, breakdowns, KPI totals) is one grouped
  aggregate over the raw events. The rollups have no latency, so the raw events of the window
  are read anyway; counting and summing in that same pass costs nothing more, and it is always
  current (no rollup lag, no late-event merge).
- p50/p95 latency: on PostgreSQL `percentile_cont(f) WITHIN GROUP (ORDER BY latency_ms)` in
  that same query; elsewhere (SQLite, the embedded demo) the latencies of the window are read
  and interpolated in Python the same way (linear, as percentile_cont does).
- Daily cost per tenant (`daily_costs`, for the cost anomalies) needs no latency: it reads the
  daily rollups for the days rolled up, plus the raw events the rollups don't hold (stored
  after the rollup, or on days not rolled up), as billing.reports does.

Buckets are UTC hours or days. Costs are Decimal; an event without a cost counts as 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DecimalField,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from billing import rollups
from billing.models import UsageEvent, UsageRollup, UsageRollupMark
from portal.models import ApiKey, Application, Tenant

HOUR, DAY = rollups.HOUR, rollups.DAY
ZERO = Decimal(0)
_COST = DecimalField(max_digits=24, decimal_places=10)

# ?period= of the pages: how long, and the bucket of its series.
PERIODS = {
    "24h": (timedelta(hours=24), HOUR),
    "7d": (timedelta(days=7), DAY),
    "30d": (timedelta(days=30), DAY),
}
DEFAULT_PERIOD = "7d"
BREAKDOWNS = ("model", "provider", "application", "key", "tenant")
COMPARED = ("requests", "tokens", "cost", "p50", "p95", "error_rate")


# --- periods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end): whole buckets, the current one included."""

    key: str
    bucket: str
    start: datetime
    end: datetime

    @property
    def previous(self) -> Period:
        return Period(self.key, self.bucket, self.start - (self.end - self.start), self.start)

    def buckets(self) -> list[datetime]:
        return rollups.buckets(self.bucket, self.start, self.end)


def period(key: str | None, now: datetime | None = None) -> Period:
    """The period named `key` ("24h", "7d", "30d"; anything else: the default) ending with
    the current hour (24h) or today (7d, 30d)."""
    key = key if key in PERIODS else DEFAULT_PERIOD
    span, bucket = PERIODS[key]
    end = rollups.floor(now or timezone.now(), bucket) + rollups.STEP[bucket]
    return Period(key, bucket, end - span, end)


def events_in(qs: QuerySet, start: datetime, end: datetime) -> QuerySet:
    return qs.filter(created_at__gte=start, created_at__lt=end)


# --- the aggregate -----------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: the continuous percentile `fraction` of the
    expression (linear interpolation between the two nearest values)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be within [0, 1]")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def percentile(values: list[float], fraction: float) -> float | None:
    """What percentile_cont computes, for `values` in any order; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _sums() -> dict[str, Any]:
    # Named agg_*: annotations can't take the events' field names.
    return {
        "agg_requests": Count("id"),
        "agg_errors": Count("id", filter=Q(status__gte=400)),
        "agg_input_tokens": Coalesce(Sum("input_tokens"), Value(0), output_field=IntegerField()),
        "agg_output_tokens": Coalesce(Sum("output_tokens"), Value(0), output_field=IntegerField()),
        "agg_cost": Coalesce(Sum("cost", output_field=_COST), Value(ZERO), output_field=_COST),
    }


def _in_sql() -> bool:
    return connection.vendor == "postgresql"


def metrics(row: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures of a group of events (an aggregate row; none: an empty group)."""
    row = row or {}
    requests = int(row.get("agg_requests") or 0)
    errors = int(row.get("agg_errors") or 0)
    input_tokens = int(row.get("agg_input_tokens") or 0)
    output_tokens = int(row.get("agg_output_tokens") or 0)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens": input_tokens + output_tokens,
        "cost": Decimal(row.get("agg_cost") or 0),
        "p50": row.get("agg_p50"),
        "p95": row.get("agg_p95"),
    }


def grouped(qs: QuerySet, group=None, *, latency: bool = True) -> dict[Any, dict[str, Any]]:
    """The metrics of `qs` per value of the `group` expression (None: one group, key None)."""
    aggregates = _sums()
    if latency and _in_sql():
        aggregates["agg_p50"] = PercentileCont("latency_ms", 0.5)
        aggregates["agg_p95"] = PercentileCont("latency_ms", 0.95)
    if group is None:
        rows = [{"group": None, **qs.aggregate(**aggregates)}]
    else:
        qs = qs.annotate(group=group)
        rows = list(qs.values("group").annotate(**aggregates).order_by())
    out = {row["group"]: metrics(row) for row in rows if row["agg_requests"]}
    if latency and not _in_sql():
        latencies: dict[Any, list[float]] = defaultdict(list)
        pairs = (
            qs.values_list("group", "latency_ms")
            if group is not None
            else ((None, ms) for ms in qs.values_list("latency_ms", flat=True))
        )
        for key, ms in pairs:
            latencies[key].append(ms)
        for key, figures in out.items():
            figures["p50"] = percentile(latencies[key], 0.5)
            figures["p95"] = percentile(latencies[key], 0.95)
    return out


# --- what the pages show -----------------------------------------------------------------


def totals(qs: QuerySet) -> dict[str, Any]:
    """The metrics of all of `qs` (zeros when empty)."""
    return grouped(qs).get(None) or metrics()


def series(events_qs: QuerySet, start: datetime, end: datetime, bucket: str) -> list[dict]:
    """One row per hour or day bucket of [start, end), oldest first, empty buckets included
    (zeros; no percentiles, no error rate): {"bucket": datetime, **metrics}."""
    if bucket not in rollups.STEP:
        raise ValueError(f"bucket must be one of {', '.join(rollups.STEP)}")
    trunc = (TruncDay if bucket == DAY else TruncHour)("created_at", tzinfo=UTC)
    found = grouped(events_in(events_qs, start, end), trunc)
    return [
        {"bucket": moment, **(found.get(moment) or metrics())}
        for moment in rollups.buckets(bucket, start, end)
    ]


def _dimension(by: str):
    if by == "model":
        return rollups.event_model()
    fields = {
        "provider": "provider",
        "application": "application_id",
        "key": "api_key_id",
        "tenant": "tenant_id",
    }
    if by not in fields:
        raise ValueError(f"by must be one of {', '.join(BREAKDOWNS)}")
    return F(fields[by])


def breakdown(qs: QuerySet, by: str, *, latency: bool = True) -> list[dict]:
    """One row per model, provider, application, key or tenant of `qs`, costliest first:
    {"id": the value (None: unknown), "label": what to show, **metrics}."""
    found = grouped(qs, _dimension(by), latency=latency)
    labels = _labels(by, [ident for ident in found if ident not in (None, "")])
    rows = [
        {"id": ident, "label": labels.get(ident) or _unknown(by, ident), **figures}
        for ident, figures in found.items()
    ]
    rows.sort(key=lambda row: (-row["cost"], -row["requests"], row["label"]))
    return rows


def top_consumers(qs: QuerySet, n: int = 5) -> dict[str, list[dict]]:
    """The `n` costliest applications and keys of `qs`."""
    return {
        "applications": breakdown(qs, "application", latency=False)[:n],
        "keys": breakdown(qs, "key", latency=False)[:n],
    }


def compare(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, dict]:
    """Per compared metric: value, previous, delta and % change (None when the previous was
    0 or unknown), and "up"/"down"/"" for the arrow."""
    out = {}
    for name in COMPARED:
        now, before = current.get(name), previous.get(name)
        delta = pct = None
        if now is not None and before is not None:
            delta = now - before
            pct = float(delta) / float(before) * 100 if before else None
        direction = "up" if delta and delta > 0 else "down" if delta and delta < 0 else ""
        out[name] = {
            "value": now,
            "previous": before,
            "delta": delta,
            "pct": pct,
            "direction": direction,
        }
    return out


def _labels(by: str, ids: list) -> dict:
    if by in ("model", "provider"):
        return {ident: ident for ident in ids}
    if by == "application":
        return dict(Application.objects.filter(pk__in=ids).values_list("pk", "name"))
    if by == "tenant":
        return dict(Tenant.objects.filter(pk__in=ids).values_list("pk", "name"))
    return {key.pk: f"{key.name} ({key.prefix}…)" for key in ApiKey.objects.filter(pk__in=ids)}


def _unknown(by: str, ident) -> str:
    if ident in (None, ""):
        return {"application": "No application", "key": "No key"}.get(by, "unknown")
    return f"{by} #{ident} (deleted)"


# --- daily cost per tenant (rollups where rolled up) -------------------------------------


def daily_costs(first: date, last: date, *, tenant_ids=None) -> dict[int, dict[date, dict]]:
    """{tenant_id: {day: {"cost", "requests"}}} for the UTC days first..last (included), days
    without events left out: daily rollups for the days rolled up, raw events for the rest
    (late events above a day's mark, and days not rolled up)."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    marks = dict(
        UsageRollupMark.objects.filter(
            granularity=DAY, bucket_start__gte=start, bucket_start__lt=end
        ).values_list("bucket_start", "max_event_id")
    )
    out: dict[int, dict[date, dict]] = defaultdict(dict)

    def add(tenant_id, day: date, cost, requests) -> None:
        if tenant_id is None or not requests:
            return
        into = out[tenant_id].setdefault(day, {"cost": ZERO, "requests": 0})
        into["cost"] += Decimal(cost or 0)
        into["requests"] += int(requests)

    rolled = UsageRollup.objects.filter(granularity=DAY, bucket_start__in=list(marks))
    raw = UsageEvent.objects.filter(_not_rolled_up(marks, start, end))
    if tenant_ids is not None:
        rolled, raw = rolled.filter(tenant_id__in=tenant_ids), raw.filter(tenant_id__in=tenant_ids)
    for row in (
        rolled.values("tenant_id", "bucket_start")
        .annotate(agg_cost=Sum("cost"), agg_requests=Sum("requests"))
        .order_by()
    ):
        add(row["tenant_id"], row["bucket_start"].astimezone(UTC).date(), *_pair(row))
    for row in (
        raw.values("tenant_id", day=TruncDay("created_at", tzinfo=UTC))
        .annotate(**_sums())
        .order_by()
    ):
        add(row["tenant_id"], row["day"].astimezone(UTC).date(), *_pair(row))
    return dict(out)


def _pair(row: dict) -> tuple:
    return row["agg_cost"], row["agg_requests"]


def _not_rolled_up(marks: dict[datetime, int], start: datetime, end: datetime) -> Q:
    """Events of days without a mark, and of marked days above the mark."""
    where = Q(pk__in=[])
    for day in rollups.buckets(DAY, start, end):
        nxt = day + rollups.STEP[DAY]
        if day in marks:
            where |= Q(created_at__gte=day, created_at__lt=nxt, id__gt=marks[day])
        else:
            where |= Q(created_at__gte=day, created_at__lt=nxt)
    return where

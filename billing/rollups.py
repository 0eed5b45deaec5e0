"""Hourly and daily rollups of the usage events, and the aggregate both rollups and reports use.

`rollup(granularity, start, end)` recomputes every bucket of a range from UsageEvent in one
aggregate query and replaces what was stored for the range, so running it again changes
nothing (idempotent) and re-running it after late events arrive picks them up. Celery beat
re-rolls the recent buckets (billing.tasks); without Celery (embedded mode) nothing is rolled
up and reports read the raw events.

Each rolled bucket gets a `UsageRollupMark` with the highest event id the rollup saw: the
rollup holds exactly the bucket's events with `id <= max_event_id`. Events stored after
(late, with higher ids) are not lost: reports add them from the raw events, so a report built
from rollups equals the raw events to the cent.

Dimensions: tenant, application (the key's application, looked up when rolling up), key,
model (the public model that answered: `served_model`, else `public_model`) and provider.

Cache savings: what the cached input tokens did not cost, cached tokens x (input price -
cached-input price), priced from the `Price` table as it stood at each event's time, with the
gateway's lookup order (gateway.catalog.load): the deployment's own price
("provider/upstream_model"), then the answering model's, then the upstream model's list price.
A price without a cached-input price saved nothing. It is derived, not stored per event, so
it follows prices as recorded and needs nothing from the hot path.

Response-cache savings are another thing: a request the gateway answered from its response
cache ("hit" or "semantic-hit") sent nothing upstream; its event's `cache_saved` is what the
original answer cost, stored by the gateway at the time. `response_cache_hits` counts those
events and `response_cache_saved` sums their `cache_saved`; misses, bypasses and requests
that never consulted the cache count for neither.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat, Least, NullIf, TruncDay, TruncHour
from django.utils import timezone

from billing.models import Price, UsageEvent, UsageRollup, UsageRollupMark

HOUR = UsageRollup.Granularity.HOUR
DAY = UsageRollup.Granularity.DAY
STEP = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
MILLION = Decimal(1_000_000)
LOCK_SPACE, LOCK = 0x5753, {HOUR: 1, DAY: 2}  # pg_advisory_xact_lock keys
ZERO = Decimal(0)
# UsageEvent.cache values of answers served from the response cache (not "miss", "bypass", "").
RESPONSE_CACHE_HITS = ("hit", "semantic-hit")

DIMENSIONS = ("application_id", "api_key_id", "model", "provider")
COUNTS = ("requests", "errors", "unpriced_requests", "response_cache_hits")
TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens")
MONEY = ("cost", "cache_savings", "response_cache_saved")
MEASURES = COUNTS + TOKENS + MONEY

_SUM = DecimalField(max_digits=38, decimal_places=12)
_PRICE = DecimalField(max_digits=12, decimal_places=6)


# --- the one aggregate ------------------------------------------------------------------


def _price_gap(model_name) -> Subquery:
    """Input minus cached-input price of the Price row for `model_name` in force at the
    event's time; NULL when there is none (the next name is tried)."""
    gap = ExpressionWrapper(
        F("input_per_mtok") - Coalesce("cached_input_per_mtok", "input_per_mtok"),
        output_field=_PRICE,
    )
    rows = (
        Price.objects.filter(model_name=model_name, effective_from__lte=OuterRef("created_at"))
        .order_by("-effective_from")
        .annotate(gap=gap)
        .values("gap")[:1]
    )
    return Subquery(rows, output_field=_PRICE)


def event_model():
    return Coalesce(NullIf("served_model", Value("")), "public_model")


def event_model_outer():
    """The same, seen from a subquery."""
    return Coalesce(NullIf(OuterRef("served_model"), Value("")), OuterRef("public_model"))


def event_dimensions() -> tuple[tuple[str, ...], dict[str, Any]]:
    """The report dimensions of an event for `.values(*fields, **expressions)`."""
    return ("api_key_id", "provider", "application_id"), {"model": event_model()}


def event_sums() -> dict[str, Any]:
    """The measures of a group of events, named `agg_<measure>` (annotations can't take the
    events' field names). `agg_savings_mtok` is in USD x 10^6 (exact in Decimal)."""
    cached = Least(
        Coalesce("cached_input_tokens", Value(0)),
        Coalesce("input_tokens", "cached_input_tokens"),
        output_field=IntegerField(),
    )
    gap = Coalesce(
        _price_gap(Concat(OuterRef("provider"), Value("/"), OuterRef("upstream_model"))),
        _price_gap(event_model_outer()),
        _price_gap(OuterRef("upstream_model")),
        Value(ZERO),
        output_field=_PRICE,
    )
    saved = Case(
        When(cached_input_tokens__gt=0, then=ExpressionWrapper(cached * gap, output_field=_SUM)),
        default=Value(ZERO),
        output_field=_SUM,
    )
    is_hit = Q(cache__in=RESPONSE_CACHE_HITS)
    return {
        "agg_requests": Count("id"),
        "agg_errors": Count("id", filter=Q(status__gte=400)),
        "agg_unpriced_requests": Count("id", filter=Q(cost__isnull=True)),
        "agg_input_tokens": Coalesce(Sum("input_tokens"), Value(0)),
        "agg_output_tokens": Coalesce(Sum("output_tokens"), Value(0)),
        "agg_cached_input_tokens": Coalesce(Sum("cached_input_tokens"), Value(0)),
        "agg_cost": Coalesce(Sum("cost", output_field=_SUM), Value(ZERO), output_field=_SUM),
        "agg_savings_mtok": Coalesce(Sum(saved, output_field=_SUM), Value(ZERO), output_field=_SUM),
        "agg_response_cache_hits": Count("id", filter=is_hit),
        # Only hits: a stray cache_saved on any other event would claim a saving never made.
        "agg_response_cache_saved": Coalesce(
            Sum("cache_saved", filter=is_hit, output_field=_SUM), Value(ZERO), output_field=_SUM
        ),
    }


def measures_of(row: dict[str, Any]) -> dict[str, Any]:
    """The measures of one aggregate row of events, in the rollup's units."""
    out: dict[str, Any] = {name: int(row[f"agg_{name}"] or 0) for name in COUNTS + TOKENS}
    out["cost"] = Decimal(row["agg_cost"] or 0)
    out["cache_savings"] = Decimal(row["agg_savings_mtok"] or 0) / MILLION
    out["response_cache_saved"] = Decimal(row["agg_response_cache_saved"] or 0)
    return out


# --- rolling up ------------------------------------------------------------------------


def floor(moment: datetime, granularity: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if granularity == DAY else moment


def buckets(granularity: str, start: datetime, end: datetime) -> list[datetime]:
    """The bucket starts of [start, end), start rounded down to a bucket."""
    out, moment = [], floor(start, granularity)
    while moment < end:
        out.append(moment)
        moment += STEP[granularity]
    return out


def rollup(granularity: str, start: datetime, end: datetime, *, now: datetime | None = None) -> int:
    """Recompute the `granularity` buckets that [start, end) touches from the raw events, and
    replace the stored ones. Returns the number of rollup rows written."""
    if granularity not in STEP:
        raise ValueError(f"granularity must be one of {', '.join(STEP)}")
    now = now or timezone.now()
    starts = buckets(granularity, start, end)
    if not starts:
        return 0
    first, last = starts[0], starts[-1] + STEP[granularity]
    trunc = TruncDay if granularity == DAY else TruncHour
    dimension_fields, dimension_expressions = event_dimensions()
    with transaction.atomic():
        _lock(granularity)
        # First the watermark, then the aggregate up to it: whatever is stored meanwhile has
        # a higher id and counts as late.
        watermark = UsageEvent.objects.aggregate(top=Max("id"))["top"] or 0
        rows = (
            UsageEvent.objects.filter(created_at__gte=first, created_at__lt=last, id__lte=watermark)
            .values(
                "tenant_id",
                *dimension_fields,
                bucket=trunc("created_at", tzinfo=UTC),
                **dimension_expressions,
            )
            .annotate(**event_sums())
            .order_by()
        )
        rollups = [
            UsageRollup(
                granularity=granularity,
                bucket_start=row["bucket"],
                tenant_id=row["tenant_id"],
                **{name: row[name] for name in DIMENSIONS},
                **measures_of(row),
            )
            for row in rows
        ]
        UsageRollup.objects.filter(
            granularity=granularity, bucket_start__gte=first, bucket_start__lt=last
        ).delete()
        UsageRollup.objects.bulk_create(rollups, batch_size=1000)
        UsageRollupMark.objects.filter(
            granularity=granularity, bucket_start__gte=first, bucket_start__lt=last
        ).delete()
        UsageRollupMark.objects.bulk_create(
            UsageRollupMark(
                granularity=granularity,
                bucket_start=moment,
                max_event_id=watermark,
                computed_at=now,
            )
            for moment in starts
            if moment <= now  # a bucket that has not begun is not marked
        )
    return len(rollups)


def _lock(granularity: str) -> None:
    """One rollup of a granularity at a time (SQLite's IMMEDIATE transactions serialise)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SPACE, LOCK[granularity]])


def rollup_recent(granularity: str, *, now: datetime | None = None) -> int:
    """The current and the previous bucket (events arrive late)."""
    now = now or timezone.now()
    current = floor(now, granularity)
    return rollup(granularity, current - STEP[granularity], current + STEP[granularity], now=now)

"""A tenant's monthly cost report: totals, breakdowns by application, key and model, cache
savings and the trend against the previous month.

Months are calendar months in UTC. The figures come from the daily rollups for the days that
were rolled up, plus the raw events those rollups did not hold (stored after the day was
rolled up: `id > UsageRollupMark.max_event_id`), plus the raw events of the days not rolled
up (today, or every day in embedded mode where no Celery beat runs). Each event is therefore
counted exactly once and the report's cost equals `Sum(UsageEvent.cost)` of the tenant and
month exactly. Requests whose cost is unknown (no price, or no token counts) add nothing to
the cost and are counted as `unpriced_requests`.

Money is Decimal throughout, unrounded; `usd()` rounds to cents for display only. Two
savings are reported, both explained in billing.rollups: `cache_savings` (provider prompt
caching: cached input tokens priced lower) and `response_cache_saved` (answers the gateway's
response cache gave, which would otherwise have cost `response_cache_saved` upstream; what the
tenant paid for those hits is in `cost`).
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Q, Sum
from django.utils import timezone

from billing import rollups
from billing.models import UsageEvent, UsageRollup, UsageRollupMark
from portal.models import ApiKey, Application, Tenant

ZERO = Decimal(0)
CENT = Decimal("0.01")
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
FIRST_YEAR = 2000


# --- months ------------------------------------------------------------------------------


def parse_month(text: str) -> tuple[int, int]:
    """ "YYYY-MM" -> (year, month); ValueError for anything else."""
    match = MONTH_RE.match(text or "")
    if not match:
        raise ValueError("Give the month as YYYY-MM, e.g. 2026-01.")
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or year < FIRST_YEAR:
        raise ValueError(f"{text} is not a month (YYYY-MM, from {FIRST_YEAR}).")
    return year, month


def month_label(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    days = calendar.monthrange(year, month)[1]
    return start, start + timedelta(days=days)


def previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def recent_months(count: int = 12, now: datetime | None = None) -> list[tuple[int, int]]:
    """The current month and the ones before it, newest first."""
    now = (now or timezone.now()).astimezone(UTC)
    out, year, month = [], now.year, now.month
    for _ in range(count):
        out.append((year, month))
        year, month = previous_month(year, month)
    return out


def usd(amount: Decimal) -> str:
    """Display only: rounded to the cent, "$1,234.57" (negative: "-$1.20")."""
    cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{'-' if cents < 0 else ''}${abs(cents):,.2f}"


def _money(amount: Decimal, places: int = 10) -> str:
    """Exact, fixed-point, to the places of the stored figures (a cost has 10, a cache saving
    12), so every backend writes the same string ("0.0000000000", never "0E-10")."""
    return f"{amount.quantize(Decimal(1).scaleb(-places)):f}"


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """Usage of one application, key or model, or of the whole month (`id` None, `label`
    "Total"). Money unrounded."""

    label: str
    id: int | str | None = None
    requests: int = 0
    errors: int = 0
    unpriced_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: Decimal = ZERO
    cache_savings: Decimal = ZERO  # by provider prompt caching
    response_cache_hits: int = 0
    response_cache_saved: Decimal = ZERO  # by the gateway's response cache

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_display(self) -> str:
        return usd(self.cost)

    @property
    def cache_savings_display(self) -> str:
        return usd(self.cache_savings)

    @property
    def response_cache_saved_display(self) -> str:
        return usd(self.response_cache_saved)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": None if self.id in (None, "") else str(self.id),
            "name": self.label,
            "requests": self.requests,
            "errors": self.errors,
            "unpriced_requests": self.unpriced_requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "tokens": self.tokens,
            "cost_usd": _money(self.cost),
            "cache_savings_usd": _money(self.cache_savings, 12),
            "response_cache_hits": self.response_cache_hits,
            "response_cache_saved_usd": _money(self.response_cache_saved),
        }


@dataclass(frozen=True)
class Trend:
    previous_month: str  # "YYYY-MM"
    previous_cost: Decimal
    change: Decimal  # this month's cost minus the previous month's
    change_pct: Decimal | None  # to 0.01 %; None when the previous month cost nothing

    @property
    def previous_cost_display(self) -> str:
        return usd(self.previous_cost)

    @property
    def change_display(self) -> str:
        return ("+" if self.change > 0 else "") + usd(self.change)

    @property
    def change_pct_display(self) -> str:
        if self.change_pct is None:
            return "n/a"
        return f"{'+' if self.change_pct > 0 else ''}{self.change_pct}%"


@dataclass(frozen=True)
class CostReport:
    tenant_slug: str
    tenant_name: str
    year: int
    month: int
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    total: Line
    by_application: tuple[Line, ...]
    by_key: tuple[Line, ...]
    by_model: tuple[Line, ...]
    trend: Trend
    currency: str = field(default="USD")

    @property
    def label(self) -> str:
        return month_label(self.year, self.month)

    @property
    def title(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the API and the webhook: money as exact decimal strings."""
        trend = self.trend
        return {
            "tenant": self.tenant_slug,
            "tenant_name": self.tenant_name,
            "month": self.label,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "generated_at": self.generated_at.isoformat(),
            "currency": self.currency,
            "total": self.total.as_dict(),
            "by_application": [line.as_dict() for line in self.by_application],
            "by_key": [line.as_dict() for line in self.by_key],
            "by_model": [line.as_dict() for line in self.by_model],
            "trend": {
                "previous_month": trend.previous_month,
                "previous_cost_usd": _money(trend.previous_cost),
                "change_usd": _money(trend.change),
                "change_pct": None if trend.change_pct is None else str(trend.change_pct),
            },
        }


def monthly_report(tenant: Tenant, year: int, month: int) -> CostReport:
    start, end = month_bounds(year, month)
    groups = usage_groups(tenant.pk, start, end)
    prev_year, prev_month = previous_month(year, month)
    previous_cost = sum(
        (g["cost"] for g in usage_groups(tenant.pk, *month_bounds(prev_year, prev_month))),
        ZERO,
    )
    total = _line("Total", None, groups)
    change = total.cost - previous_cost
    pct = None
    if previous_cost:
        pct = (change * 100 / previous_cost).quantize(CENT, rounding=ROUND_HALF_UP)
    return CostReport(
        tenant_slug=tenant.slug,
        tenant_name=tenant.name,
        year=year,
        month=month,
        period_start=start,
        period_end=end,
        generated_at=timezone.now(),
        total=total,
        by_application=_breakdown(groups, "application_id", _application_labels),
        by_key=_breakdown(groups, "api_key_id", _key_labels),
        by_model=_breakdown(groups, "model", _model_labels),
        trend=Trend(month_label(prev_year, prev_month), previous_cost, change, pct),
    )


# --- where the figures come from ----------------------------------------------------------


def usage_groups(tenant_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The tenant's usage in [start, end) (whole UTC days), one dict per application, key,
    model and provider: daily rollups where marked, raw events for the rest."""
    marks = dict(
        UsageRollupMark.objects.filter(
            granularity=rollups.DAY, bucket_start__gte=start, bucket_start__lt=end
        ).values_list("bucket_start", "max_event_id")
    )
    merged: dict[tuple, dict[str, Any]] = {}

    def add(row: dict[str, Any], measures: dict[str, Any]) -> None:
        key = tuple(row[name] for name in rollups.DIMENSIONS)
        into = merged.setdefault(key, {name: row[name] for name in rollups.DIMENSIONS})
        for name, value in measures.items():
            into[name] = into.get(name, 0) + value

    if marks:
        rolled = (
            UsageRollup.objects.filter(
                granularity=rollups.DAY, tenant_id=tenant_id, bucket_start__in=list(marks)
            )
            .values(*rollups.DIMENSIONS)
            .annotate(**{f"agg_{name}": Sum(name) for name in rollups.MEASURES})
            .order_by()
        )
        for row in rolled:
            add(row, {name: row[f"agg_{name}"] for name in rollups.MEASURES})

    dimension_fields, dimension_expressions = rollups.event_dimensions()
    raw = (
        UsageEvent.objects.filter(tenant_id=tenant_id)
        .filter(_not_rolled_up(marks, start, end))
        .values(*dimension_fields, **dimension_expressions)
        .annotate(**rollups.event_sums())
        .order_by()
    )
    for row in raw:
        add(row, rollups.measures_of(row))
    return list(merged.values())


def _not_rolled_up(marks: dict[datetime, int], start: datetime, end: datetime) -> Q:
    """Days without a mark (merged into ranges), and marked days' events above the mark."""
    where, run_start = Q(), None
    for day in rollups.buckets(rollups.DAY, start, end):
        if day in marks:
            if run_start is not None:
                where |= Q(created_at__gte=run_start, created_at__lt=day)
                run_start = None
            nxt = day + rollups.STEP[rollups.DAY]
            where |= Q(created_at__gte=day, created_at__lt=nxt, id__gt=marks[day])
        elif run_start is None:
            run_start = day
    if run_start is not None:
        where |= Q(created_at__gte=run_start, created_at__lt=end)
    return where


def _line(label: str, ident: int | str | None, groups: list[dict[str, Any]]) -> Line:
    values: dict[str, Any] = {name: 0 for name in rollups.COUNTS + rollups.TOKENS}
    values.update({name: ZERO for name in rollups.MONEY})
    for group in groups:
        for name in values:
            values[name] += group[name]
    return Line(label=label, id=ident, **values)


def _breakdown(groups, dimension: str, labels) -> tuple[Line, ...]:
    by: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for group in groups:
        by[group[dimension]].append(group)
    names = labels([ident for ident in by if ident not in (None, "")])
    lines = [
        _line(names.get(ident) or _unnamed(dimension, ident), ident, g) for ident, g in by.items()
    ]
    return tuple(sorted(lines, key=lambda line: (-line.cost, -line.requests, line.label)))


def _unnamed(dimension: str, ident) -> str:
    if ident in (None, ""):
        return {
            "application_id": "(no application)",
            "api_key_id": "(no key)",
            "model": "(unknown model)",
        }[dimension]
    return f"{dimension.removesuffix('_id').replace('_', ' ')} #{ident} (deleted)"


def _application_labels(ids) -> dict[int, str]:
    return dict(Application.objects.filter(pk__in=ids).values_list("pk", "name"))


def _key_labels(ids) -> dict[int, str]:
    return {
        pk: f"{name} ({prefix}…)"
        for pk, name, prefix in ApiKey.objects.filter(pk__in=ids).values_list(
            "pk", "name", "prefix"
        )
    }


def _model_labels(names) -> dict[str, str]:
    return {name: name for name in names}

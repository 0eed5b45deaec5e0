"""Reads of usage, budgets and rate limits: aggregate queries on UsageEvent for a tenant.

Days are UTC calendar days. A window of `days` ends today and covers `days` days, today
included. Costs are Decimal (USD), never floats; token counts treat a missing count as 0.
`response_cache_hits` and `response_cache_saved` are the answers the gateway's response cache
gave and what they would have cost upstream (see billing.rollups); `cost` already holds what
the hits themselves cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import (
    Count,
    DecimalField,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, NullIf, TruncDate
from django.utils import timezone

from billing import controls
from billing.models import Budget, RateLimit, UsageEvent
from billing.rollups import RESPONSE_CACHE_HITS
from portal.models import ApiKey, Application, Tenant

USAGE_DAYS = (7, 30, 90)
DEFAULT_USAGE_DAYS = 30
METRICS = (
    "cost",
    "input_tokens",
    "output_tokens",
    "requests",
    "errors",
    "response_cache_hits",
    "response_cache_saved",
)

_COST = DecimalField(max_digits=18, decimal_places=10)


def _metrics() -> dict:
    """The aggregates of every report; fresh expressions for each query."""
    return {
        "cost": Coalesce(Sum("cost"), Value(Decimal(0)), output_field=_COST),
        "input_tokens": Coalesce(Sum("input_tokens"), Value(0), output_field=IntegerField()),
        "output_tokens": Coalesce(Sum("output_tokens"), Value(0), output_field=IntegerField()),
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__gte=400)),
        "response_cache_hits": Count("id", filter=Q(cache__in=RESPONSE_CACHE_HITS)),
        # Only hits, as in the rollups: other events never saved anything.
        "response_cache_saved": Coalesce(
            Sum("cache_saved", filter=Q(cache__in=RESPONSE_CACHE_HITS)),
            Value(Decimal(0)),
            output_field=_COST,
        ),
    }


def _zero() -> dict:
    return {
        "cost": Decimal(0),
        "input_tokens": 0,
        "output_tokens": 0,
        "requests": 0,
        "errors": 0,
        "response_cache_hits": 0,
        "response_cache_saved": Decimal(0),
    }


def _only_metrics(row: dict) -> dict:
    return {name: row[name] for name in METRICS}


# --- the window and the events in it ---------------------------------------------------


def usage_window(*, days: int, now: datetime | None = None) -> tuple[date, date]:
    """The first and last UTC day (both included) of the `days` days ending today."""
    if days < 1:
        raise ValueError("days must be at least 1")
    last = (now or timezone.now()).astimezone(UTC).date()
    return last - timedelta(days=days - 1), last


def usage_events(*, tenant: Tenant, first: date, last: date):
    """The tenant's usage events from the start of `first` to the end of `last` (UTC)."""
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    return UsageEvent.objects.filter(tenant_id=tenant.pk, created_at__gte=start, created_at__lt=end)


# --- the reports --------------------------------------------------------------------------


def usage_totals(*, tenant: Tenant, first: date, last: date) -> dict:
    """The METRICS over the window."""
    return usage_events(tenant=tenant, first=first, last=last).aggregate(**_metrics())


def usage_per_day(*, tenant: Tenant, first: date, last: date) -> list[dict]:
    """One row per day of the window, days without traffic included (all zero), oldest first."""
    rows = (
        usage_events(tenant=tenant, first=first, last=last)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**_metrics())
        .order_by("day")
    )
    found = {row["day"]: _only_metrics(row) for row in rows}
    series = []
    day = first
    while day <= last:
        series.append({"day": day, **found.get(day, _zero())})
        day += timedelta(days=1)
    return series


def usage_by_model(*, tenant: Tenant, first: date, last: date) -> list[dict]:
    """Per model that answered (`served_model`; the requested `public_model` where no model
    answered), costliest first."""
    rows = (
        usage_events(tenant=tenant, first=first, last=last)
        .annotate(model=Coalesce(NullIf(F("served_model"), Value("")), F("public_model")))
        .values("model")
        .annotate(**_metrics())
        .order_by("-cost", "-requests", "model")
    )
    return [{"model": row["model"] or "", **_only_metrics(row)} for row in rows]


def usage_by_application(*, tenant: Tenant, first: date, last: date) -> list[dict]:
    """Per application of the calling key, costliest first; `application_id` None gathers
    calls without a key or with a key outside any application."""
    calling_key = ApiKey.objects.filter(pk=OuterRef("api_key_id"))
    rows = (
        usage_events(tenant=tenant, first=first, last=last)
        .annotate(application_ref=Subquery(calling_key.values("application_id")[:1]))
        .values("application_ref")
        .annotate(**_metrics())
        .order_by("-cost", "-requests", "application_ref")
    )
    rows = list(rows)
    ids = [row["application_ref"] for row in rows if row["application_ref"] is not None]
    names = dict(Application.objects.filter(tenant=tenant, pk__in=ids).values_list("pk", "name"))
    result = []
    for row in rows:
        app_id = row["application_ref"] if row["application_ref"] in names else None
        result.append(
            {
                "application_id": app_id,
                "application_name": names.get(app_id, ""),
                **_only_metrics(row),
            }
        )
    return _merge_unknown(result, key="application_id")


def usage_by_key(*, tenant: Tenant, first: date, last: date) -> list[dict]:
    """Per API key, costliest first; `api_key_id` None gathers calls without a (known) key."""
    rows = list(
        usage_events(tenant=tenant, first=first, last=last)
        .values("api_key_id")
        .annotate(**_metrics())
        .order_by("-cost", "-requests", "api_key_id")
    )
    ids = [row["api_key_id"] for row in rows if row["api_key_id"] is not None]
    keys = {
        key.pk: key
        for key in ApiKey.objects.filter(tenant=tenant, pk__in=ids).select_related("application")
    }
    result = []
    for row in rows:
        key = keys.get(row["api_key_id"])
        result.append(
            {
                "api_key_id": key.pk if key else None,
                "key_name": key.name if key else "",
                "key_prefix": key.prefix if key else "",
                "application_id": key.application_id if key else None,
                "application_name": key.application.name if key and key.application else "",
                **_only_metrics(row),
            }
        )
    return _merge_unknown(result, key="api_key_id")


def _merge_unknown(rows: list[dict], *, key: str) -> list[dict]:
    """Fold the rows whose `key` is None into one, kept last."""
    known = [row for row in rows if row[key] is not None]
    unknown = [row for row in rows if row[key] is None]
    if not unknown:
        return known
    merged = dict(unknown[0])
    for row in unknown[1:]:
        for name in METRICS:
            merged[name] += row[name]
    return [*known, merged]


@dataclass(frozen=True)
class UsageReport:
    days: int
    first: date
    last: date
    totals: dict
    per_day: list[dict]
    by_model: list[dict]
    by_application: list[dict]
    by_key: list[dict]


def usage_report(*, tenant: Tenant, days: int, now: datetime | None = None) -> UsageReport:
    """Everything the usage page and the usage API show, for the `days` days ending today."""
    first, last = usage_window(days=days, now=now)
    window = {"tenant": tenant, "first": first, "last": last}
    return UsageReport(
        days=days,
        first=first,
        last=last,
        totals=usage_totals(**window),
        per_day=usage_per_day(**window),
        by_model=usage_by_model(**window),
        by_application=usage_by_application(**window),
        by_key=usage_by_key(**window),
    )


# --- budgets and rate limits ----------------------------------------------------------


def budgets_of(*, tenant: Tenant):
    return (
        Budget.objects.filter(tenant=tenant)
        .select_related("tenant", "application", "api_key", "api_key__application")
        .order_by("application_id", "api_key_id", "period", "pk")
    )


def rate_limits_of(*, tenant: Tenant):
    return (
        RateLimit.objects.filter(tenant=tenant)
        .select_related("tenant", "application", "api_key", "api_key__application")
        .order_by("application_id", "api_key_id", "model", "pk")
    )


def budget_in(*, tenant: Tenant, budget_id: int) -> Budget | None:
    return budgets_of(tenant=tenant).filter(pk=budget_id).first()


def rate_limit_in(*, tenant: Tenant, limit_id: int) -> RateLimit | None:
    return rate_limits_of(tenant=tenant).filter(pk=limit_id).first()


def target_label(obj: Budget | RateLimit) -> str:
    """What a budget or limit applies to, for people."""
    if obj.api_key_id:
        key = obj.api_key
        return f"Key {key.name} ({key.prefix}…)"
    if obj.application_id:
        return f"Application {obj.application.name}"
    return f"Tenant {obj.tenant.name}"


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    spent: Decimal
    percent: Decimal  # of the amount, may exceed 100
    period_start: datetime | None  # None: a total budget, counted since the beginning
    period_end: datetime | None  # exclusive; None for a total budget
    target: str

    @property
    def exceeded(self) -> bool:
        return self.spent >= self.budget.amount_usd

    @property
    def warn_at(self) -> int:
        """The percentage from which the budget is nearly spent: its first notification
        threshold below 100, or 80."""
        return min([t for t in self.budget.thresholds or () if t < 100] or [80])

    @property
    def fill(self) -> Decimal:
        """The percent for a gauge: 0 to 100."""
        return min(max(self.percent, Decimal(0)), Decimal(100))

    @property
    def state(self) -> str:
        """ok, warn (from `warn_at`) or over (spent the amount)."""
        if self.exceeded:
            return "over"
        return "warn" if self.percent >= self.warn_at else "ok"


def _period_end(period: str, start: datetime | None) -> datetime | None:
    if start is None:
        return None
    if period == Budget.Period.DAILY:
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def budget_status(budget: Budget, now: datetime | None = None) -> BudgetStatus:
    """What a budget has spent in its current period, and how far that fills it."""
    now = now or timezone.now()
    spent = controls.budget_spent(budget, now)
    start = controls.period_start(budget.period, now)
    percent = (spent * 100 / budget.amount_usd) if budget.amount_usd else Decimal(0)
    return BudgetStatus(
        budget=budget,
        spent=spent,
        percent=percent.quantize(Decimal("0.1")),
        period_start=start,
        period_end=_period_end(budget.period, start),
        target=target_label(budget),
    )


def budget_statuses(*, tenant: Tenant, now: datetime | None = None) -> list[BudgetStatus]:
    now = now or timezone.now()
    return [budget_status(budget, now) for budget in budgets_of(tenant=tenant)]

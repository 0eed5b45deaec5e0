"""The analytics pages: a tenant's (`usage.view`, like the usage page) and the operator's over
every tenant (staff only). KPIs against the previous period, charts over time (inline SVG),
breakdowns, top consumers and the cost anomalies."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.shortcuts import render

from billing.models import UsageEvent
from observability import analytics, charts
from observability.models import CostAnomaly
from portal import access
from portal.views.common import portal_view, tenant_page

TOP = 5
ANOMALIES = 10
PERIOD_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
TABLES = (
    ("model", "By model"),
    ("provider", "By provider"),
    ("application", "By application"),
    ("key", "By key"),
)


def _usd(value) -> str:
    return f"${Decimal(value or 0):,.4f}"


def _count(value) -> str:
    return f"{round(float(value or 0)):,}"


def _ms(value) -> str:
    return "—" if value is None else f"{float(value):,.0f} ms"


def _rate(value) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f} %"


KPIS = (
    ("requests", "Requests", _count),
    ("tokens", "Tokens", _count),
    ("cost", "Cost", _usd),
    ("p50", "p50 latency", _ms),
    ("p95", "p95 latency", _ms),
    ("error_rate", "Error rate", _rate),
)


def _kpis(comparison: dict[str, dict]) -> list[dict]:
    tiles = []
    for name, label, fmt in KPIS:
        figures = comparison[name]
        pct = figures["pct"]
        if pct is not None:
            change = f"{abs(pct):.1f} %"
        elif figures["value"] and not figures["previous"]:
            change = "new"
        else:
            change = ""
        tiles.append(
            {
                "id": f"kpi-{name.replace('_', '-')}",
                "label": label,
                "value": fmt(figures["value"]),
                "previous": fmt(figures["previous"]),
                "change": change,
                "direction": figures["direction"] if change != "new" else "up",
            }
        )
    return tiles


def _bucket_label(moment: datetime, bucket: str) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment:%H:00}" if bucket == analytics.HOUR else f"{moment:%b %d}"


def _charts(rows: list[dict], period: analytics.Period) -> list[charts.Chart]:
    labels = [_bucket_label(row["bucket"], period.bucket) for row in rows]
    per = "hour" if period.bucket == analytics.HOUR else "day"

    def column(name):
        return [row[name] for row in rows]

    return [
        charts.bar_chart(
            labels, column("requests"), id="requests-chart", title=f"Requests per {per}", fmt=_count
        ),
        charts.line_chart(
            labels,
            {"input": column("input_tokens"), "output": column("output_tokens")},
            id="tokens-chart",
            title=f"Tokens per {per}",
            fmt=_count,
        ),
        charts.bar_chart(
            labels, column("cost"), id="cost-chart", title=f"Cost per {per} (USD)", fmt=_usd
        ),
        charts.line_chart(
            labels,
            {"p50": column("p50"), "p95": column("p95")},
            id="latency-chart",
            title="Latency, p50 and p95 (ms)",
            fmt=_ms,
        ),
        charts.line_chart(
            labels,
            {"error rate": column("error_rate")},
            id="errors-chart",
            title="Error rate (status 400 and above)",
            fmt=_rate,
        ),
    ]


def _dashboard(events: QuerySet, period: analytics.Period, *, by_tenant: bool) -> dict:
    window = analytics.events_in(events, period.start, period.end)
    previous = analytics.events_in(events, period.previous.start, period.previous.end)
    rows = analytics.series(events, period.start, period.end, period.bucket)
    current = analytics.totals(window)
    tables = [*TABLES, ("tenant", "By tenant")] if by_tenant else list(TABLES)
    return {
        "period": period,
        "period_choices": PERIOD_LABELS.items(),
        "period_label": PERIOD_LABELS[period.key],
        "totals": current,
        "kpis": _kpis(analytics.compare(current, analytics.totals(previous))),
        "charts": _charts(rows, period),
        "series": rows,
        "tables": [
            {"by": by, "title": title, "rows": _with_rates(analytics.breakdown(window, by))}
            for by, title in tables
        ],
        "top": analytics.top_consumers(window, TOP),
    }


def _with_rates(rows: list[dict]) -> list[dict]:
    return [{**row, "error_display": _rate(row["error_rate"])} for row in rows]


def _anomalies(anomalies: QuerySet, period: analytics.Period) -> list[dict]:
    since = period.start.astimezone(UTC).date()
    return [
        {"anomaly": anomaly, "recent": anomaly.day >= since}
        for anomaly in anomalies.select_related("tenant").order_by("-day", "tenant_id")[:ANOMALIES]
    ]


@portal_view
def tenant_analytics(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    period = analytics.period(request.GET.get("period"))
    events = UsageEvent.objects.filter(tenant_id=tenant.pk)
    context = {
        "tenant": tenant,
        "operator": False,
        "anomalies": _anomalies(CostAnomaly.objects.filter(tenant=tenant), period),
        **_dashboard(events, period, by_tenant=False),
    }
    return render(request, "observability/analytics.html", context)


@portal_view
def operator_analytics(request):
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator sees the analytics of every tenant.")
    period = analytics.period(request.GET.get("period"))
    context = {
        "tenant": None,
        "operator": True,
        "anomalies": _anomalies(CostAnomaly.objects.all(), period),
        **_dashboard(UsageEvent.objects.all(), period, by_tenant=True),
    }
    return render(request, "observability/analytics.html", context)

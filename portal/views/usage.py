"""The tenant's usage page: totals, per-day charts (inline SVG) and tables by model,
application and key, over the last 7, 30 or 90 days."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.shortcuts import render

from billing import selectors as usage
from portal.views.common import portal_view, tenant_page

# The SVG's own coordinates; it scales to the width of the page.
CHART_WIDTH = 720
CHART_HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 24


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # e.g. "2026-11-28: $0.0123"


@dataclass
class Tick:
    y: float
    label: str


@dataclass
class Chart:
    id: str
    title: str
    summary: str  # the chart's description for screen readers
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = LEFT
    right_edge: int = CHART_WIDTH - RIGHT
    baseline: float = CHART_HEIGHT - BOTTOM
    label_y: float = CHART_HEIGHT - 6
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    first_label: str = ""
    last_label: str = ""


def days_param(value: str | None) -> int:
    """`?days=` of the page: 7, 30 or 90; anything else is the default."""
    try:
        days = int(value or usage.DEFAULT_USAGE_DAYS)
    except ValueError:
        return usage.DEFAULT_USAGE_DAYS
    return days if days in usage.USAGE_DAYS else usage.DEFAULT_USAGE_DAYS


def _usd(value: Decimal | float) -> str:
    return f"${Decimal(value):,.4f}"


def _count(value: Decimal | float) -> str:
    return f"{int(value):,}"


def bar_chart(
    series: list[dict], metric: str, *, id: str, title: str, fmt=_count, unit: str = ""
) -> Chart:
    """Bars of `metric` per day of `series` (usage_per_day rows), scaled to the largest."""
    values = [row[metric] for row in series]
    top = max(values, default=0) or 1
    plot_width = CHART_WIDTH - LEFT - RIGHT
    plot_height = CHART_HEIGHT - TOP - BOTTOM
    step = plot_width / max(len(series), 1)
    width = max(step * 0.75, 1.0)
    bars = []
    for i, row in enumerate(series):
        value = row[metric]
        height = float(value) / float(top) * plot_height if value else 0.0
        bars.append(
            Bar(
                x=round(LEFT + i * step + (step - width) / 2, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(width, 2),
                height=round(height, 2),
                label=f"{row['day']:%Y-%m-%d}: {fmt(value)}{unit}",
            )
        )
    ticks = [
        Tick(y=round(TOP + plot_height * (1 - share), 2), label=fmt(Decimal(top) * Decimal(share)))
        for share in (0, 0.5, 1)
    ]
    busiest = max(series, key=lambda row: row[metric], default=None)
    total = sum(values)
    if busiest is None or not busiest[metric]:
        summary = "No usage in these days."
    else:
        summary = (
            f"{len(series)} days from {series[0]['day']:%Y-%m-%d} to {series[-1]['day']:%Y-%m-%d}; "
            f"total {fmt(total)}{unit}; highest {fmt(busiest[metric])}{unit} "
            f"on {busiest['day']:%Y-%m-%d}."
        )
    return Chart(
        id=id,
        title=title,
        summary=summary,
        bars=bars,
        ticks=ticks,
        first_label=f"{series[0]['day']:%b %d}" if series else "",
        last_label=f"{series[-1]['day']:%b %d}" if series else "",
    )


@portal_view
def usage_page(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    days = days_param(request.GET.get("days"))
    report = usage.usage_report(tenant=tenant, days=days)
    charts = [
        bar_chart(
            report.per_day,
            "cost",
            id="cost-chart",
            title=f"Cost per day (USD), last {days} days",
            fmt=_usd,
        ),
        bar_chart(
            report.per_day,
            "requests",
            id="requests-chart",
            title=f"Requests per day, last {days} days",
            unit=" requests",
        ),
    ]
    context = {
        "tenant": tenant,
        "report": report,
        "days": days,
        "day_choices": usage.USAGE_DAYS,
        "charts": charts,
    }
    return render(request, "portal/usage.html", context)

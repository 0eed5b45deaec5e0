"""Charts as plain data for a server-rendered inline SVG
(templates/observability/_analytics_chart.html): bars or lines over the buckets of a series,
with three y-axis ticks and a few x-axis labels. No JavaScript, nothing fetched.

Coordinates are the SVG's own (a viewBox of WIDTH x HEIGHT); the SVG scales to the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 72, 12, 12, 24
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
COLORS = ("#1f4fa8", "#b4521a", "#2e7d32")
X_LABELS = 4  # at most, first and last included

Number = int | float | Decimal


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # "2026-11-28: $0.0123"


@dataclass
class Line:
    name: str
    color: str
    segments: list[str]  # "x,y x,y ..." of each run of buckets that have a value
    dots: list[tuple[float, float, str]]  # x, y, title: a dot per value


@dataclass
class Tick:
    x: float
    y: float
    label: str


@dataclass
class Chart:
    id: str
    title: str
    summary: str  # for screen readers, and shown under the chart
    kind: str  # "bar" or "line"
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    baseline: int = HEIGHT - BOTTOM
    label_y: int = HEIGHT - 6


def _scale(values: Sequence[Number | None]) -> float:
    return float(max((v for v in values if v is not None), default=0) or 1)


def _y(value: Number, top: float) -> float:
    return round(TOP + PLOT_HEIGHT * (1 - float(value) / top), 2)


def _axes(labels: Sequence[str], top: float, fmt: Callable) -> tuple[list[Tick], list[Tick]]:
    y_ticks = [
        Tick(x=LEFT - 6, y=_y(top * share, top), label=fmt(top * share)) for share in (0, 0.5, 1)
    ]
    count = len(labels)
    step = PLOT_WIDTH / max(count, 1)
    picks = (
        sorted({round(i * (count - 1) / (X_LABELS - 1)) for i in range(X_LABELS)}) if count else []
    )
    x_ticks = [
        Tick(x=round(LEFT + step * (i + 0.5), 2), y=HEIGHT - 6, label=labels[i]) for i in picks
    ]
    return y_ticks, x_ticks


def bar_chart(
    labels: Sequence[str], values: Sequence[Number], *, id: str, title: str, fmt: Callable = str
) -> Chart:
    """A bar per bucket; `labels` name the buckets (x axis), `fmt` formats a value."""
    top = _scale(values)
    step = PLOT_WIDTH / max(len(values), 1)
    width = round(max(step * 0.75, 1.0), 2)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = _y(value or 0, top)
        bars.append(
            Bar(
                x=round(LEFT + i * step + (step - width) / 2, 2),
                y=y,
                width=width,
                height=round(TOP + PLOT_HEIGHT - y, 2),
                title=f"{label}: {fmt(value or 0)}",
            )
        )
    y_ticks, x_ticks = _axes(labels, top, fmt)
    return Chart(
        id=id,
        title=title,
        summary=_summary(labels, {title: values}, fmt),
        kind="bar",
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
    )


def line_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[Number | None]],
    *,
    id: str,
    title: str,
    fmt: Callable = str,
) -> Chart:
    """A line per named series over the buckets; a None (no value: no calls in the bucket)
    breaks the line there."""
    top = _scale([v for values in series.values() for v in values])
    step = PLOT_WIDTH / max(len(labels), 1)
    lines = []
    for (name, values), color in zip(series.items(), COLORS, strict=False):
        segments, run, dots = [], [], []
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            if value is None:
                segments, run = _close(segments, run), []
                continue
            x, y = round(LEFT + step * (i + 0.5), 2), _y(value, top)
            run.append(f"{x},{y}")
            dots.append((x, y, f"{name} {label}: {fmt(value)}"))
        lines.append(Line(name=name, color=color, segments=_close(segments, run), dots=dots))
    y_ticks, x_ticks = _axes(labels, top, fmt)
    return Chart(
        id=id,
        title=title,
        summary=_summary(labels, series, fmt),
        kind="line",
        lines=lines,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
    )


def _close(segments: list[str], run: list[str]) -> list[str]:
    return [*segments, " ".join(run)] if run else segments


def _summary(labels: Sequence[str], series: dict[str, Sequence], fmt: Callable) -> str:
    if not labels:
        return "No buckets."
    span = f"{len(labels)} buckets from {labels[0]} to {labels[-1]}"
    parts = []
    for name, values in series.items():
        known = [(v, label) for v, label in zip(values, labels, strict=True) if v]
        if known:
            value, label = max(known, key=lambda pair: pair[0])
            parts.append(f"{name}: highest {fmt(value)} at {label}")
    return f"{span}; " + ("; ".join(parts) if parts else "no calls") + "."

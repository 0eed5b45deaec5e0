"""One call's timeline: the pipeline's stages from `UsageEvent.timings` and each upstream
attempt, as bars whose `left` and `width` are percents of the longest (call.html draws them
with plain CSS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from billing.models import UsageEvent


@dataclass(frozen=True)
class Span:
    """A bar of the timeline: `left` and `width` are percents of the longest span."""

    kind: str  # "stage", "attempt" or "total"
    label: str
    start_ms: float
    ms: float
    left: float = 0.0
    width: float = 0.0
    outcome: str = ""


STAGES = (
    ("auth_ms", "Authentication"),
    ("guardrails_ms", "Guardrails"),
    ("cache_ms", "Cache lookup"),
    ("upstream_ms", "Upstream"),
)


def timeline(event: UsageEvent) -> list[Span]:
    """The stages of `timings` one after the other (the pipeline runs them in this order;
    routing and admission between them aren't timed), the attempts within the upstream
    stage, then first token and total from the start."""
    timings = event.timings if isinstance(event.timings, dict) else {}
    spans, at = [], 0.0
    for name, label in STAGES:
        ms = _ms(timings.get(name))
        if ms is None:
            continue
        if name == "upstream_ms":
            spans += _attempts(event.attempts, at)
        spans.append(Span("stage", label, at, ms))
        at += ms
    if not any(s.kind == "attempt" for s in spans):
        spans += _attempts(event.attempts, at)
    first = _ms(timings.get("first_token_ms", event.ttft_ms))
    if first is not None:
        spans.append(Span("total", "First token", 0.0, first))
    total = _ms(timings.get("total_ms", event.latency_ms))
    if total is not None:
        spans.append(Span("total", "Total", 0.0, total))
    return _scaled(spans)


def _attempts(attempts: Any, at: float) -> list[Span]:
    spans = []
    for attempt in attempts if isinstance(attempts, list) else []:
        ms = _ms(attempt.get("ms")) if isinstance(attempt, dict) else None
        if ms is None:
            continue
        label = f"{attempt.get('provider', '?')} / {attempt.get('model', '?')}"
        spans.append(Span("attempt", label, at, ms, outcome=str(attempt.get("outcome", ""))))
        at += ms
    return spans


def _ms(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _scaled(spans: list[Span]) -> list[Span]:
    longest = max((s.start_ms + s.ms for s in spans), default=0.0) or 1.0
    return [
        Span(
            s.kind,
            s.label,
            s.start_ms,
            s.ms,
            left=round(s.start_ms / longest * 100, 2),
            width=round(s.ms / longest * 100, 2),
            outcome=s.outcome,
        )
        for s in spans
    ]

"""Load-balancing strategies: the order in which a model's deployments are tried.

The inputs (in-flight requests, time-to-first-token averages) are counted per process and, in
distributed mode, merged with the other processes' by gateway.shared; the round-robin cursor
stays per process.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable

from gateway.catalog import Target

STRATEGIES = ("weighted", "round_robin", "least_busy", "lowest_latency", "lowest_cost")
LATENCY_SMOOTHING = 0.2  # weight of the newest sample in the moving average

in_flight: dict[str, int] = defaultdict(int)  # this process's
latency_ms: dict[str, float] = {}
remote_busy: dict[str, int] = {}  # the other live processes', summed
remote_latency_ms: dict[str, float] = {}  # ... averaged
_cursors: dict[str, itertools.count] = {}


def order(model: str, strategy: str, targets: tuple[Target, ...]) -> list[Target]:
    if len(targets) == 1:
        return list(targets)
    return ORDERS.get(strategy, weighted)(model, targets)


def weighted(model: str, targets: tuple[Target, ...]) -> list[Target]:
    """Weighted random order without replacement (Efraimidis–Spirakis keys)."""
    keyed = [(random.random() ** (1.0 / max(t.weight, 1)), t) for t in targets]
    return [t for _, t in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


def round_robin(model: str, targets: tuple[Target, ...]) -> list[Target]:
    start = next(_cursors.setdefault(model, itertools.count())) % len(targets)
    return list(targets[start:] + targets[:start])


def least_busy(model: str, targets: tuple[Target, ...]) -> list[Target]:
    shuffled = random.sample(targets, len(targets))  # ties go anywhere
    return sorted(shuffled, key=lambda t: busy(t.deployment))


def lowest_latency(model: str, targets: tuple[Target, ...]) -> list[Target]:
    # Unmeasured deployments first, so each gets a sample.
    shuffled = random.sample(targets, len(targets))
    return sorted(shuffled, key=lambda t: latency(t.deployment))


def busy(dep: str) -> int:
    return in_flight.get(dep, 0) + remote_busy.get(dep, 0)


def latency(dep: str) -> float:
    """Milliseconds to first token, all processes; -1 for an unmeasured deployment."""
    mine, theirs = latency_ms.get(dep), remote_latency_ms.get(dep)
    if mine is None or theirs is None:
        return mine if mine is not None else theirs if theirs is not None else -1.0
    return (mine + theirs) / 2


def lowest_cost(model: str, targets: tuple[Target, ...]) -> list[Target]:
    def price(t: Target) -> float:
        if t.price is None:
            return float("inf")
        return float(t.price.input_per_mtok + t.price.output_per_mtok)

    return sorted(random.sample(targets, len(targets)), key=price)


ORDERS: dict[str, Callable[[str, tuple[Target, ...]], list[Target]]] = {
    "weighted": weighted,
    "round_robin": round_robin,
    "least_busy": least_busy,
    "lowest_latency": lowest_latency,
    "lowest_cost": lowest_cost,
}


def started(dep: str) -> None:
    in_flight[dep] += 1


def finished(dep: str) -> None:
    in_flight[dep] = max(0, in_flight[dep] - 1)


def observe_latency(dep: str, first_byte_ms: float) -> None:
    previous = latency_ms.get(dep)
    latency_ms[dep] = (
        first_byte_ms
        if previous is None
        else previous + LATENCY_SMOOTHING * (first_byte_ms - previous)
    )

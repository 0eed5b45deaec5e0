"""How an experiment's arms are doing, and whether a difference is more than noise.

`arm_metrics` reads the usage events the gateway wrote for each arm (`UsageEvent.prompt` holds
{"experiment": id, "arm": id, ...}) and the feedback callers gave those requests. Feedback
joins a usage event on (request_id, tenant): one tenant's score never counts for another
tenant's request, even when the request ids collide.

`compare` is plain statistics on the aggregates, with no database: Welch's z on the feedback
means and a pooled two-proportion z-test on the error rates, both two-sided with a normal
approximation (math.erf). Below MIN_SAMPLES per arm the approximation isn't trusted and the
readout says so instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Avg, Count, Exists, OuterRef, Q, StdDev, Sum

from billing.models import UsageEvent
from prompts.models import Experiment, ExperimentArm, Feedback

MIN_SAMPLES = 30  # per arm, for the normal approximation of either test
ERROR_STATUS = 400  # a call answered with this status or above failed


# --- statistics (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Test:
    """A two-sided test of `difference` (the arm minus the control) against zero."""

    difference: float
    z: float
    confidence: float  # 1 - p


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def confidence_from_z(z: float) -> float:
    """1 - the two-sided p-value of a standard normal z."""
    if math.isinf(z):
        return 1.0
    return 1.0 - 2.0 * (1.0 - normal_cdf(abs(z)))


def _test(difference: float, standard_error: float) -> Test:
    if standard_error <= 0:  # no spread at all: any difference is certain, none is nothing
        z = math.copysign(math.inf, difference) if difference else 0.0
    else:
        z = difference / standard_error
    return Test(difference=difference, z=z, confidence=confidence_from_z(z))


def welch_z(
    *, mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int
) -> Test:
    """Is mean_b - mean_a nonzero? Welch's standard error (no equal-variance assumption),
    read off the normal distribution: fine for the sample sizes MIN_SAMPLES asks for."""
    if n_a < 1 or n_b < 1:
        raise ValueError("Each sample needs at least one value.")
    standard_error = math.sqrt(std_a**2 / n_a + std_b**2 / n_b)
    return _test(mean_b - mean_a, standard_error)


def two_proportion_z(*, x_a: int, n_a: int, x_b: int, n_b: int) -> Test:
    """Is x_b/n_b - x_a/n_a nonzero? The pooled two-proportion z-test."""
    if n_a < 1 or n_b < 1:
        raise ValueError("Each sample needs at least one trial.")
    pooled = (x_a + x_b) / (n_a + n_b)
    standard_error = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return _test(x_b / n_b - x_a / n_a, standard_error)


def format_confidence(confidence: float) -> str:
    """Rounded down, so 99.96 % never reads as a certain 100 %."""
    if confidence >= 0.999:
        return "> 99.9%"
    return f"{math.floor(confidence * 100)}%"


# --- per-arm metrics (the database) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArmMetrics:
    arm: ExperimentArm
    version: int  # the version's number
    weight: int
    calls: int
    errors: int
    error_rate: float | None  # None without calls
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    avg_cost: Decimal | None  # over the calls whose cost is known
    total_cost: Decimal | None
    scored: int  # calls with feedback
    feedback_mean: float | None
    feedback_std: float | None  # sample standard deviation; None below two scores


def _events(experiment: Experiment, arm: ExperimentArm):
    return UsageEvent.objects.filter(prompt__experiment=experiment.pk, prompt__arm=arm.pk)


def _p95(events, calls: int) -> float | None:
    """The nearest-rank 95th percentile: one indexed row, not the whole column."""
    if not calls:
        return None
    rank = math.ceil(0.95 * calls) - 1
    return events.order_by("latency_ms").values_list("latency_ms", flat=True)[rank]


def _feedback(events):
    """The feedback on these events: same request id, and given by the tenant that called."""
    joined = events.filter(request_id=OuterRef("request_id"), tenant_id=OuterRef("tenant_id"))
    return Feedback.objects.filter(Exists(joined)).aggregate(
        scored=Count("pk"), mean=Avg("score"), std=StdDev("score", sample=True)
    )


def _one(experiment: Experiment, arm: ExperimentArm) -> ArmMetrics:
    events = _events(experiment, arm)
    usage = events.aggregate(
        calls=Count("pk"),
        errors=Count("pk", filter=Q(status__gte=ERROR_STATUS)),
        latency=Avg("latency_ms"),
        avg_cost=Avg("cost"),
        total_cost=Sum("cost"),
    )
    feedback = _feedback(events)
    calls = usage["calls"]
    return ArmMetrics(
        arm=arm,
        version=arm.version.number,
        weight=arm.weight,
        calls=calls,
        errors=usage["errors"],
        error_rate=usage["errors"] / calls if calls else None,
        avg_latency_ms=usage["latency"],
        p95_latency_ms=_p95(events, calls),
        avg_cost=usage["avg_cost"],
        total_cost=usage["total_cost"],
        scored=feedback["scored"],
        feedback_mean=feedback["mean"],
        feedback_std=feedback["std"] if feedback["scored"] >= 2 else None,
    )


def arm_metrics(experiment: Experiment) -> list[ArmMetrics]:
    """One row per arm, the control (the first arm) first."""
    arms = experiment.arms.select_related("version").order_by("pk")
    return [_one(experiment, arm) for arm in arms]


# --- the readout -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    metric: str  # "feedback" | "error_rate"
    test: Test | None  # None: not enough data
    sentence: str


@dataclass(frozen=True, slots=True)
class Readout:
    arm: ArmMetrics
    control: ArmMetrics
    feedback: Comparison
    error_rate: Comparison


def _not_enough(what: str) -> str:
    return f"not enough data (needs ≥ {MIN_SAMPLES} {what} per arm)"


def compare_feedback(control: ArmMetrics, arm: ArmMetrics) -> Comparison:
    if min(control.scored, arm.scored) < MIN_SAMPLES:
        return Comparison("feedback", None, _not_enough("scored calls"))
    test = welch_z(
        mean_a=control.feedback_mean, std_a=control.feedback_std or 0.0, n_a=control.scored,
        mean_b=arm.feedback_mean, std_b=arm.feedback_std or 0.0, n_b=arm.scored,
    )  # fmt: skip
    if test.difference == 0:
        sentence = f"v{arm.version} scores the same as v{control.version}"
    else:
        direction = "higher" if test.difference > 0 else "lower"
        sentence = (
            f"v{arm.version} scores {abs(test.difference):.2f} {direction} than "
            f"v{control.version} (confidence {format_confidence(test.confidence)})"
        )
    return Comparison("feedback", test, sentence)


def compare_error_rate(control: ArmMetrics, arm: ArmMetrics) -> Comparison:
    if min(control.calls, arm.calls) < MIN_SAMPLES:
        return Comparison("error_rate", None, _not_enough("calls"))
    test = two_proportion_z(x_a=control.errors, n_a=control.calls, x_b=arm.errors, n_b=arm.calls)
    if test.difference == 0:
        sentence = f"v{arm.version} fails as often as v{control.version}"
    else:
        direction = "more" if test.difference > 0 else "less"
        sentence = (
            f"v{arm.version} fails {abs(test.difference) * 100:.1f} points {direction} often "
            f"than v{control.version} ({arm.error_rate:.1%} vs {control.error_rate:.1%}, "
            f"confidence {format_confidence(test.confidence)})"
        )
    return Comparison("error_rate", test, sentence)


def compare(control: ArmMetrics, arm: ArmMetrics) -> Readout:
    """How `arm` differs from `control` in feedback and in errors."""
    return Readout(
        arm=arm,
        control=control,
        feedback=compare_feedback(control, arm),
        error_rate=compare_error_rate(control, arm),
    )


def readouts(metrics: list[ArmMetrics]) -> list[Readout]:
    """Each arm after the first against the first (the control)."""
    return [compare(metrics[0], arm) for arm in metrics[1:]]

"""An experiment's numbers: the statistics on known inputs, and per-arm metrics from real
usage events and feedback (joined by request id *and* tenant) on the real database."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import UsageEvent
from portal import services
from prompts import experiments
from prompts import services as library
from prompts.experiment_metrics import (
    MIN_SAMPLES,
    ArmMetrics,
    arm_metrics,
    compare,
    confidence_from_z,
    format_confidence,
    readouts,
    two_proportion_z,
    welch_z,
)
from prompts.models import Feedback

MESSAGES = [{"role": "user", "content": "Classify: {{ text }}"}]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


# --- statistics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "z, confidence",
    [(0.0, 0.0), (1.959964, 0.95), (-1.959964, 0.95), (2.575829, 0.99), (1.0, 0.682689)],
    ids=["zero", "95", "95-negative", "99", "one-sigma"],
)
def test_confidence_is_one_minus_the_two_sided_p(z, confidence):
    assert confidence_from_z(z) == pytest.approx(confidence, abs=1e-6)


def test_welch_z_on_known_means():
    # se = sqrt(1.0²/50 + 1.5²/40) = sqrt(0.07625) = 0.276134; z = 0.5 / se
    test = welch_z(mean_a=3.0, std_a=1.0, n_a=50, mean_b=3.5, std_b=1.5, n_b=40)
    assert test.difference == pytest.approx(0.5)
    assert test.z == pytest.approx(1.810715, abs=1e-6)
    assert test.confidence == pytest.approx(0.929815, abs=1e-6)


def test_welch_z_is_antisymmetric():
    forward = welch_z(mean_a=3.0, std_a=1.0, n_a=50, mean_b=3.5, std_b=1.5, n_b=40)
    backward = welch_z(mean_a=3.5, std_a=1.5, n_a=40, mean_b=3.0, std_b=1.0, n_b=50)
    assert backward.z == pytest.approx(-forward.z)
    assert backward.confidence == pytest.approx(forward.confidence)


def test_two_proportion_z_on_known_rates():
    # 10 % vs 6 % of 500: pooled 0.08, se = sqrt(0.08 * 0.92 * 2/500) = 0.0171581
    test = two_proportion_z(x_a=50, n_a=500, x_b=30, n_b=500)
    assert test.difference == pytest.approx(-0.04)
    assert test.z == pytest.approx(-2.331262, abs=1e-6)
    assert test.confidence == pytest.approx(0.980260, abs=1e-6)


@pytest.mark.parametrize(
    "x_a, x_b, difference, confidence",
    [(0, 0, 0.0, 0.0), (40, 40, 0.0, 0.0), (0, 5, 5 / 40, None)],
    ids=["no-errors", "all-errors", "from-zero"],
)
def test_two_proportion_z_edges(x_a, x_b, difference, confidence):
    test = two_proportion_z(x_a=x_a, n_a=40, x_b=x_b, n_b=40)
    assert test.difference == pytest.approx(difference)
    if confidence is not None:
        assert test.confidence == confidence
    else:
        assert 0.95 < test.confidence < 1


def test_no_spread_makes_any_difference_certain_and_none_nothing():
    same = welch_z(mean_a=1.0, std_a=0.0, n_a=30, mean_b=1.0, std_b=0.0, n_b=30)
    apart = welch_z(mean_a=1.0, std_a=0.0, n_a=30, mean_b=0.0, std_b=0.0, n_b=30)
    assert (same.z, same.confidence) == (0.0, 0.0)
    assert math.isinf(apart.z) and apart.z < 0 and apart.confidence == 1.0


def test_empty_samples_are_refused():
    with pytest.raises(ValueError):
        welch_z(mean_a=1, std_a=1, n_a=0, mean_b=1, std_b=1, n_b=3)
    with pytest.raises(ValueError):
        two_proportion_z(x_a=0, n_a=3, x_b=0, n_b=0)


@pytest.mark.parametrize(
    "confidence, text",
    [(0.9298, "92%"), (0.96, "96%"), (0.9999, "> 99.9%"), (0.0, "0%"), (0.9989, "99%")],
)
def test_confidence_is_rounded_down(confidence, text):
    assert format_confidence(confidence) == text


def _metrics(version, *, calls=100, errors=0, scored=0, mean=None, std=None) -> ArmMetrics:
    return ArmMetrics(
        arm=None, version=version, weight=50, calls=calls, errors=errors,
        error_rate=errors / calls if calls else None, avg_latency_ms=None, p95_latency_ms=None,
        avg_cost=None, total_cost=None, scored=scored, feedback_mean=mean, feedback_std=std,
    )  # fmt: skip


def test_the_readout_says_which_arm_scores_higher_and_how_sure():
    control = _metrics(1, calls=500, errors=50, scored=50, mean=3.0, std=1.0)
    arm = _metrics(3, calls=500, errors=30, scored=40, mean=3.5, std=1.5)
    readout = compare(control, arm)
    assert readout.feedback.sentence == "v3 scores 0.50 higher than v1 (confidence 92%)"
    assert readout.feedback.test.confidence == pytest.approx(0.929815, abs=1e-6)
    assert readout.error_rate.sentence == (
        "v3 fails 4.0 points less often than v1 (6.0% vs 10.0%, confidence 98%)"
    )
    worse = compare(arm, control)
    assert worse.feedback.sentence == "v1 scores 0.50 lower than v3 (confidence 92%)"
    assert worse.error_rate.sentence.startswith("v1 fails 4.0 points more often than v3")


def test_the_readout_refuses_small_samples():
    control = _metrics(1, calls=MIN_SAMPLES, scored=MIN_SAMPLES - 1, mean=3.0, std=1.0)
    arm = _metrics(2, calls=MIN_SAMPLES - 1, scored=MIN_SAMPLES, mean=4.0, std=1.0)
    readout = compare(control, arm)
    assert readout.feedback.test is None
    assert readout.feedback.sentence == "not enough data (needs ≥ 30 scored calls per arm)"
    assert readout.error_rate.test is None
    assert readout.error_rate.sentence == "not enough data (needs ≥ 30 calls per arm)"


# --- metrics from the database ----------------------------------------------------------


@pytest.fixture
def experiment(db):
    tenant = services.tenant_get_or_create(slug="acme")
    prompt = library.prompt_create(tenant=tenant, slug="classify", name="Classify")
    v1, v2 = (
        library.version_create(
            prompt=prompt, messages=MESSAGES, model="demo-chat", input_schema=SCHEMA
        )  # fmt: skip
        for _ in range(2)
    )
    library.label_set(prompt=prompt, name="production", version=v1)
    return experiments.experiment_start(
        prompt=prompt, name="Shorter wording", arms=[(v1, 70), (v2, 30)]
    )


def _event(request_id, *, experiment, arm, tenant_id, status=200, latency=100.0, cost=None):
    return UsageEvent.objects.create(
        request_id=request_id, created_at=timezone.now(), tenant_id=tenant_id, route="prompt",
        latency_ms=latency, status=status, cost=cost,
        prompt={"api": "classify", "prompt": "classify", "version": arm.version.number,
                "experiment": experiment.pk, "arm": arm.pk},
    )  # fmt: skip


@pytest.mark.django_db
def test_arm_metrics_aggregate_usage_and_feedback_per_arm(experiment):
    tenant = experiment.prompt.tenant
    other = services.tenant_get_or_create(slug="other")
    control, challenger = experiment.arms.order_by("pk")
    # control: 4 calls, one 500 and one 400 (errors), one 399 (not an error)
    for n, (status, latency, cost) in enumerate(
        [(200, 100.0, "0.001"), (500, 300.0, None), (400, 200.0, "0.003"), (399, 400.0, "0.002")]
    ):
        _event(f"c{n}", experiment=experiment, arm=control, tenant_id=tenant.pk, status=status,
               latency=latency, cost=Decimal(cost) if cost else None)  # fmt: skip
    _event("x0", experiment=experiment, arm=challenger, tenant_id=tenant.pk, latency=50.0)
    # an event of another experiment and a plain call don't count
    UsageEvent.objects.create(request_id="plain", created_at=timezone.now(), tenant_id=tenant.pk,
                              route="chat", latency_ms=1.0, status=500)  # fmt: skip
    UsageEvent.objects.create(
        request_id="elsewhere", created_at=timezone.now(), tenant_id=tenant.pk, route="prompt",
        latency_ms=1.0, status=500, prompt={"experiment": experiment.pk + 1000, "arm": control.pk},
    )  # fmt: skip
    Feedback.objects.create(tenant=tenant, request_id="c0", score=1.0)
    Feedback.objects.create(tenant=tenant, request_id="c1", score=0.0)
    Feedback.objects.create(tenant=tenant, request_id="c2", score=0.5)
    # another tenant's feedback on the same request id never scores our request
    Feedback.objects.create(tenant=other, request_id="c3", score=-100.0)
    Feedback.objects.create(tenant=other, request_id="x0", score=-100.0)

    first, second = arm_metrics(experiment)

    assert (first.arm, first.version, first.weight) == (control, 1, 70)
    assert (first.calls, first.errors, first.error_rate) == (4, 2, 0.5)
    assert first.avg_latency_ms == pytest.approx(250.0)
    assert first.p95_latency_ms == pytest.approx(400.0)
    assert first.avg_cost == Decimal("0.002") and first.total_cost == Decimal("0.006")
    assert (first.scored, first.feedback_mean) == (3, pytest.approx(0.5))
    assert first.feedback_std == pytest.approx(0.5)  # sample std of 1, 0, 0.5
    assert (second.arm, second.version, second.weight) == (challenger, 2, 30)
    assert (second.calls, second.errors, second.error_rate) == (1, 0, 0.0)
    assert (second.scored, second.feedback_mean, second.feedback_std) == (0, None, None)
    assert second.avg_cost is None and second.total_cost is None


@pytest.mark.django_db
def test_arm_metrics_of_an_experiment_without_calls(experiment):
    metrics = arm_metrics(experiment)
    assert [(m.version, m.calls, m.error_rate, m.p95_latency_ms) for m in metrics] == [
        (1, 0, None, None),
        (2, 0, None, None),
    ]
    (readout,) = readouts(metrics)
    assert readout.feedback.test is None and readout.error_rate.test is None


@pytest.mark.django_db
def test_readouts_from_the_database_reach_a_verdict(experiment):
    tenant = experiment.prompt.tenant
    control, challenger = experiment.arms.order_by("pk")
    for n in range(40):
        _event(f"c{n}", experiment=experiment, arm=control, tenant_id=tenant.pk,
               status=500 if n < 8 else 200)  # fmt: skip
        Feedback.objects.create(tenant=tenant, request_id=f"c{n}", score=float(n % 2))
        _event(f"x{n}", experiment=experiment, arm=challenger, tenant_id=tenant.pk)
        Feedback.objects.create(tenant=tenant, request_id=f"x{n}", score=1.0)

    (readout,) = readouts(arm_metrics(experiment))

    # control mean 0.5 (std 0.5064, n 40) vs 1.0 (std 0): z = 0.5 / (0.5064 / sqrt(40)) = 6.24
    assert readout.feedback.test.z == pytest.approx(6.245, abs=1e-3)
    assert readout.feedback.sentence == "v2 scores 0.50 higher than v1 (confidence > 99.9%)"
    # 8/40 vs 0/40: pooled 0.1, se = sqrt(0.1 * 0.9 * 2/40) = 0.067082, z = -2.981
    assert readout.error_rate.test.z == pytest.approx(-2.981424, abs=1e-5)
    assert readout.error_rate.sentence == (
        "v2 fails 20.0 points less often than v1 (0.0% vs 20.0%, confidence 99%)"
    )

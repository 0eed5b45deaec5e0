"""A/B experiments on a label: arms (versions with weights), sticky assignment per end user,
and promoting the winner (moving the label). Per-arm metrics: prompts/experiment_metrics.py."""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.services.common import SYSTEM, Actor, ServiceError, _check, audit
from prompts.models import Experiment, ExperimentArm, Prompt, PromptVersion
from prompts.services import label_set, version_for

MAX_ARMS = 5


@transaction.atomic
def experiment_start(
    *, actor: Actor = SYSTEM, prompt: Prompt, name: str, label: str = "production",
    arms: list[tuple[PromptVersion, int]],
) -> Experiment:  # fmt: skip
    """Split `label`'s traffic: arms are (version, weight); the first is the control."""
    _check(actor, prompt.tenant, "prompt.manage")
    version_for(prompt, label)
    if not 2 <= len(arms) <= MAX_ARMS:
        raise ServiceError(f"An experiment has 2 to {MAX_ARMS} arms.")
    if len({v.pk for v, _ in arms}) != len(arms):
        raise ServiceError("Each arm needs a different version.")
    for version, weight in arms:
        if version.prompt_id != prompt.pk:
            raise ServiceError("Every arm must be a version of this prompt.")
        if not isinstance(weight, int) or weight < 1 or weight > 10_000:
            raise ServiceError("Weights are whole numbers from 1 to 10000.")
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                prompt=prompt, label=label, name=name.strip() or f"{label} test"
            )
    except IntegrityError as exc:
        raise ServiceError(f"An experiment is already running on '{label}'.") from exc
    ExperimentArm.objects.bulk_create(
        ExperimentArm(experiment=experiment, version=v, weight=w) for v, w in arms
    )
    audit(actor=actor, tenant=prompt.tenant, action="prompt.experiment_started", target=experiment,
          arms=[[v.number, w] for v, w in arms])  # fmt: skip
    return experiment


def experiment_stop(*, actor: Actor = SYSTEM, experiment: Experiment) -> Experiment:
    """End the split; the label serves its own version again."""
    _check(actor, experiment.prompt.tenant, "prompt.manage")
    if experiment.status != Experiment.Status.RUNNING:
        raise ServiceError("The experiment has already ended.")
    experiment.status, experiment.ended_at = Experiment.Status.STOPPED, timezone.now()
    experiment.save(update_fields=["status", "ended_at"])
    audit(actor=actor, tenant=experiment.prompt.tenant, action="prompt.experiment_stopped",
          target=experiment)  # fmt: skip
    return experiment


@transaction.atomic
def experiment_promote(*, actor: Actor = SYSTEM, experiment: Experiment,
                       arm: ExperimentArm) -> Experiment:  # fmt: skip
    """End the experiment and point its label at the winning arm's version."""
    _check(actor, experiment.prompt.tenant, "prompt.manage")
    if arm.experiment_id != experiment.pk:
        raise ServiceError("That arm belongs to another experiment.")
    if experiment.status != Experiment.Status.RUNNING:
        raise ServiceError("The experiment has already ended.")
    label_set(actor=actor, prompt=experiment.prompt, name=experiment.label, version=arm.version)
    experiment.status, experiment.ended_at = Experiment.Status.PROMOTED, timezone.now()
    experiment.winner = arm.version
    experiment.save(update_fields=["status", "ended_at", "winner"])
    audit(actor=actor, tenant=experiment.prompt.tenant, action="prompt.experiment_promoted",
          target=experiment, version=arm.version.number)  # fmt: skip
    return experiment


def pick(experiment_id: int, weights: list[int], sticky_key: str) -> int:
    """The index of the arm for this end user: the same user always lands in the same arm
    (while the weights stay), and users spread over arms in proportion to the weights."""
    digest = hashlib.sha256(f"{experiment_id}:{sticky_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    return len(weights) - 1

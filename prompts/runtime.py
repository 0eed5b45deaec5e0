"""What a call to a published prompt API needs, read once per call: the API, the version (or
an experiment's arms, or a chain's steps), and the pure rules for running it: which arm an end
user gets, and whether a JSON answer is acceptable.

The gateway (gateway/prompt_calls.py) runs these plans; nothing here does I/O but the loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from prompts.models import Chain, Experiment, PromptApi, PromptVersion
from prompts.services import json_path, validator_for, variable_errors


@dataclass(frozen=True, slots=True)
class VersionPlan:
    id: int
    prompt: str  # the prompt's slug
    number: int
    messages: list[dict[str, str]]
    model: str
    parameters: dict[str, Any]
    input_schema: dict[str, Any]
    output_format: str = "text"
    output_schema: dict[str, Any] | None = None

    @classmethod
    def of(cls, version: PromptVersion) -> VersionPlan:
        return cls(
            version.pk, version.prompt.slug, version.number, version.messages, version.model,
            version.parameters, version.input_schema, version.output_format,
            version.output_schema,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Arm:
    id: int
    weight: int
    version: VersionPlan


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str
    version: VersionPlan
    variables: dict[str, str]
    when: str = ""


@dataclass(frozen=True, slots=True)
class ApiPlan:
    id: int
    slug: str
    tenant_slug: str
    product_id: int
    product_name: str
    input_schema: dict[str, Any]
    label: str = ""
    version: VersionPlan | None = None  # a prompt API: the label's or the asked version
    experiment_id: int | None = None
    arms: tuple[Arm, ...] = ()
    steps: tuple[StepPlan, ...] = field(default=())  # a chain API

    @property
    def is_chain(self) -> bool:
        return bool(self.steps)


class VersionNotFound(LookupError):
    pass


def load_api(tenant_slug: str, slug: str, number: int | None = None) -> ApiPlan | None:
    """The callable API at /api/p/{tenant_slug}/{slug}, or None (unknown, draft or retired).
    Raises VersionNotFound for a version number the prompt lacks."""
    api = (
        PromptApi.objects.select_related("product", "tenant", "prompt", "chain")
        .filter(tenant__slug=tenant_slug, slug=slug)
        .first()
    )
    if api is None or not api.product.callable:
        return None
    common = {
        "id": api.pk, "slug": api.slug, "tenant_slug": api.tenant.slug,
        "product_id": api.product_id, "product_name": api.product.name,
    }  # fmt: skip
    if api.chain is not None:
        if number is not None:
            raise VersionNotFound("A chain API has no versions to pick.")
        return ApiPlan(input_schema=api.chain.input_schema, steps=_steps(api.chain), **common)
    versions = api.prompt.versions.select_related("prompt")
    if number is not None:
        found = versions.filter(number=number).first()
        if found is None:
            raise VersionNotFound(f"'{api.prompt.slug}' has no version {number}.")
        return ApiPlan(input_schema=found.input_schema, version=VersionPlan.of(found), **common)
    labelled = api.prompt.labels.select_related("version__prompt").filter(name=api.label).first()
    if labelled is None:
        return None
    experiment = (
        Experiment.objects.filter(
            prompt=api.prompt, label=api.label, status=Experiment.Status.RUNNING
        )
        .prefetch_related("arms__version__prompt")
        .first()
    )
    arms = tuple(
        Arm(arm.id, arm.weight, VersionPlan.of(arm.version)) for arm in experiment.arms.all()
    ) if experiment else ()  # fmt: skip
    return ApiPlan(
        input_schema=labelled.version.input_schema, label=api.label,
        version=VersionPlan.of(labelled.version),
        experiment_id=experiment.pk if experiment else None, arms=arms, **common,
    )  # fmt: skip


def _steps(chain: Chain) -> tuple[StepPlan, ...]:
    wanted = {(s["prompt"], s["version"]) for s in chain.steps}
    versions = {
        (v.prompt.slug, v.number): VersionPlan.of(v)
        for v in PromptVersion.objects.select_related("prompt").filter(
            prompt__tenant_id=chain.tenant_id, prompt__slug__in={p for p, _ in wanted}
        )
        if (v.prompt.slug, v.number) in wanted
    }
    return tuple(
        StepPlan(s["name"], versions[(s["prompt"], s["version"])], s["variables"], s["when"])
        for s in chain.steps
    )


def load_version(version_id: int, tenant_id: int) -> VersionPlan | None:
    """A version of one of the tenant's prompts (the playground runs any version)."""
    found = (
        PromptVersion.objects.select_related("prompt")
        .filter(pk=version_id, prompt__tenant_id=tenant_id)
        .first()
    )
    return VersionPlan.of(found) if found is not None else None


def plan_variable_errors(plan: ApiPlan, variables: object) -> list[dict[str, str]]:
    return [
        {"path": path, "message": message}
        for path, message in variable_errors(plan.input_schema, variables).items()
    ]


# --- output -------------------------------------------------------------------------

FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class OutputInvalid(ValueError):
    """The model's answer is not what the version promises; the message says why."""


def parse_output(version: VersionPlan, text: str) -> Any:
    """The answer as the API returns it: the text, or for a JSON version the value, checked
    against the output schema. Raises OutputInvalid."""
    if version.output_format != "json":
        return text
    fenced = FENCE.match(text)
    try:
        value = orjson.loads(fenced.group(1) if fenced else text)
    except orjson.JSONDecodeError as exc:
        raise OutputInvalid(f"the answer is not JSON ({exc})") from exc
    if version.output_schema:
        errors = sorted(
            validator_for(
                orjson.dumps(version.output_schema, option=orjson.OPT_SORT_KEYS)
            ).iter_errors(value),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            where = json_path(errors[0].absolute_path)
            raise OutputInvalid(f"the answer breaks the output schema at {where}: "
                                f"{errors[0].message}")  # fmt: skip
    return value

"""Chains: a pipeline of prompt versions. Each step's variables are templates over the chain's
`input` and earlier steps' results (`steps.<name>.output`); a step with a `when` condition
runs only when it holds (a skipped step's output is null).

A variable template that is exactly one substitution (``{{ steps.classify.output }}``) passes
the value itself (an object, a number), not its text.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from portal.models import Tenant
from portal.services.common import SYSTEM, Actor, ServiceError, _check, audit
from prompts.models import Chain, Prompt
from prompts.services import _check_schema
from prompts.templating import TemplateError, compile_template

MAX_STEPS = 10
STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
WHOLE_VALUE = re.compile(r"^\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}$")
CONTEXT_NAMES = frozenset({"input", "steps"})


def _condition(source: str):
    return compile_template("{% if " + source + " %}1{% endif %}")


def _check_template(place: str, source: object, seen: set[str], condition: bool = False) -> None:
    if not isinstance(source, str):
        raise ServiceError(f"{place} must be a template string.")
    try:
        template = _condition(source) if condition else compile_template(source)
    except TemplateError as exc:
        raise ServiceError(f"{place}: {exc.message}") from exc
    stray = template.variables - CONTEXT_NAMES
    if stray:
        raise ServiceError(f"{place} may use only `input` and `steps`, not {sorted(stray)}.")
    for earlier in re.findall(r"steps\.([a-z0-9_]+)", source):
        if earlier not in seen:
            raise ServiceError(f"{place} refers to step '{earlier}', which does not come before.")


def _check_step(tenant: Tenant, step: object, where: str, seen: set[str]) -> dict[str, Any]:
    if not isinstance(step, dict):
        raise ServiceError(f"{where} must be an object.")
    name = step.get("name")
    if not isinstance(name, str) or not STEP_NAME.match(name) or name in seen:
        raise ServiceError(f"{where}.name must be a unique lower-case identifier.")
    prompt = Prompt.objects.filter(tenant=tenant, slug=step.get("prompt") or "").first()
    if prompt is None:
        raise ServiceError(f"{where}.prompt names no prompt of this tenant.")
    number = step.get("version")
    if not isinstance(number, int) or not prompt.versions.filter(number=number).exists():
        raise ServiceError(f"{where}.version must be a version number of '{prompt.slug}'.")
    variables = step.get("variables") or {}
    if not isinstance(variables, dict):
        raise ServiceError(f"{where}.variables must map variable names to templates.")
    for var, source in variables.items():
        _check_template(f"{where}.variables.{var}", source, seen)
    when = step.get("when") or ""
    if when:
        _check_template(f"{where}.when", when, seen, condition=True)
    return {"name": name, "prompt": prompt.slug, "version": number,
            "variables": dict(variables), "when": when}  # fmt: skip


def _check_steps(tenant: Tenant, steps: object) -> list[dict[str, Any]]:
    if not isinstance(steps, list) or not steps:
        raise ServiceError("'steps' must be a non-empty list.")
    if len(steps) > MAX_STEPS:
        raise ServiceError(f"A chain has at most {MAX_STEPS} steps.")
    checked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, step in enumerate(steps):
        checked.append(_check_step(tenant, step, f"steps[{n}]", seen))
        seen.add(checked[-1]["name"])
    return checked


def chain_save(
    *, actor: Actor = SYSTEM, tenant: Tenant, slug: str, name: str, steps: object,
    input_schema: object = None, description: str = "",
) -> Chain:  # fmt: skip
    """Create the chain, or replace the steps of the tenant's chain with this slug."""
    _check(actor, tenant, "prompt.manage")
    checked = _check_steps(tenant, steps)
    schema = _check_schema(input_schema or {"type": "object"}, "input_schema")
    fields = {"name": name.strip() or slug, "steps": checked, "input_schema": schema,
              "description": description}  # fmt: skip
    try:
        with transaction.atomic():
            chain, created = Chain.objects.update_or_create(
                tenant=tenant, slug=slug, defaults=fields
            )
    except IntegrityError as exc:
        raise ServiceError(f"Cannot save chain '{slug}'.") from exc
    action = "prompt.chain_created" if created else "prompt.chain_changed"
    audit(actor=actor, tenant=tenant, action=action, target=chain)
    return chain


# --- running: pure functions over the chain's context ----------------------------------


def _lookup(context: dict[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"'{path}' is not defined")
        value = value[part]
    return value


def step_variables(step: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The step's variables for this run; raises TemplateError when one cannot be rendered."""
    out = {}
    for var, source in (step.get("variables") or {}).items():
        whole = WHOLE_VALUE.match(source)
        if whole:
            out[var] = _lookup(context, whole.group(1))
        else:
            out[var] = compile_template(source).render(context)
    return out


def step_runs(step: dict[str, Any], context: dict[str, Any]) -> bool:
    when = step.get("when") or ""
    return not when or _condition(when).render(context) == "1"

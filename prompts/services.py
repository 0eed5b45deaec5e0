"""The prompt library's rules: prompts, immutable versions, labels, and rendering a version's
messages from validated variables. Every write is checked (`prompt.manage`) and audited."""

from __future__ import annotations

import difflib
import functools
import json
from typing import Any

import jsonschema
import orjson
from django.db import IntegrityError, transaction
from django.db.models import Max

from portal.models import Tenant
from portal.services.common import SYSTEM, Actor, ServiceError, _check, audit
from prompts.models import Prompt, PromptLabel, PromptVersion
from prompts.templating import Template, TemplateError, compile_template

ROLES = ("system", "user", "assistant")
OUTPUT_FORMATS = ("text", "json")
# Sampling parameters a version may fix, with the JSON types each takes.
PARAMETERS: dict[str, tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "max_tokens": (int,),
    "seed": (int,), "stop": (str, list), "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
}  # fmt: skip


class VariablesInvalid(ServiceError):
    """The variables broke the version's schema: one message per invalid field, by path."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors.items()))


def prompt_create(
    *, actor: Actor = SYSTEM, tenant: Tenant, slug: str, name: str, description: str = "",
    tags: list[str] | None = None,
) -> Prompt:  # fmt: skip
    _check(actor, tenant, "prompt.manage")
    try:
        with transaction.atomic():
            prompt = Prompt.objects.create(
                tenant=tenant, slug=slug, name=name.strip() or slug, description=description,
                tags=list(tags or []),
            )  # fmt: skip
    except IntegrityError as exc:
        raise ServiceError(f"This tenant already has a prompt '{slug}'.") from exc
    audit(actor=actor, tenant=tenant, action="prompt.created", target=prompt)
    return prompt


def _check_messages(messages: object) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ServiceError("'messages' must be a non-empty list of {role, content} templates.")
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ServiceError(f"messages[{n}].role must be one of {', '.join(ROLES)}.")
        if not isinstance(message.get("content"), str):
            raise ServiceError(f"messages[{n}].content must be a template string.")
        try:
            compile_template(message["content"])
        except TemplateError as exc:
            raise ServiceError(
                f"messages[{n}].content, line {exc.line}, column {exc.column}: {exc.message}"
            ) from exc
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _check_parameters(parameters: object) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ServiceError("'parameters' must be an object.")
    for name, value in parameters.items():
        types = PARAMETERS.get(name)
        if types is None:
            raise ServiceError(f"Unknown parameter '{name}'; use {', '.join(PARAMETERS)}.")
        if isinstance(value, bool) or not isinstance(value, types):
            raise ServiceError(f"Parameter '{name}' has the wrong type.")
    return dict(parameters)


def _check_schema(schema: object, what: str) -> dict:
    if not isinstance(schema, dict):
        raise ServiceError(f"'{what}' must be a JSON Schema object.")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ServiceError(f"'{what}' is not a valid JSON Schema: {exc.message}") from exc
    return schema


@transaction.atomic
def version_create(
    *, actor: Actor = SYSTEM, prompt: Prompt, messages: object, model: str,
    parameters: dict[str, Any] | None = None, input_schema: object = None,
    output_format: str = "text", output_schema: object = None, changelog: str = "",
) -> PromptVersion:  # fmt: skip
    """A new version, numbered after the last; versions are never changed afterwards."""
    _check(actor, prompt.tenant, "prompt.manage")
    checked = _check_messages(messages)
    schema = _check_schema(input_schema or {"type": "object"}, "input_schema")
    used = set().union(*(compile_template(m["content"]).variables for m in checked))
    declared = set((schema.get("properties") or {}).keys())
    if declared and used - declared:
        missing = ", ".join(sorted(used - declared))
        raise ServiceError(f"The templates use variables the input schema lacks: {missing}.")
    if output_format not in OUTPUT_FORMATS:
        raise ServiceError("'output_format' must be text or json.")
    if output_schema is not None:
        if output_format != "json":
            raise ServiceError("'output_schema' needs output_format json.")
        output_schema = _check_schema(output_schema, "output_schema")
    if not model:
        raise ServiceError("'model' is required.")
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    last = prompt.versions.aggregate(last=Max("number"))["last"] or 0
    version = PromptVersion.objects.create(
        prompt=prompt, number=last + 1, messages=checked, model=model,
        parameters=_check_parameters(parameters), input_schema=schema, output_format=output_format,
        output_schema=output_schema, changelog=changelog,
        author=actor.user if getattr(actor.user, "pk", None) else None,
    )  # fmt: skip
    audit(actor=actor, tenant=prompt.tenant, action="prompt.version_created", target=version)
    return version


def label_set(*, actor: Actor = SYSTEM, prompt: Prompt, name: str, version: PromptVersion
              ) -> PromptLabel:  # fmt: skip
    """Point a label at a version: a release, or a rollback to an earlier one."""
    _check(actor, prompt.tenant, "prompt.manage")
    if version.prompt_id != prompt.pk:
        raise ServiceError("That version belongs to another prompt.")
    label, _ = PromptLabel.objects.update_or_create(
        prompt=prompt, name=name, defaults={"version": version}
    )
    audit(actor=actor, tenant=prompt.tenant, action="prompt.label_moved", target=label,
          version=version.number)  # fmt: skip
    return label


def version_for(prompt: Prompt, label_or_number: str | int) -> PromptVersion:
    if isinstance(label_or_number, int) or str(label_or_number).isdigit():
        found = prompt.versions.filter(number=int(label_or_number)).first()
    else:
        label = prompt.labels.select_related("version").filter(name=label_or_number).first()
        found = label.version if label else None
    if found is None:
        raise ServiceError(f"Prompt '{prompt.slug}' has no version or label '{label_or_number}'.")
    return found


@functools.lru_cache(maxsize=1024)
def compiled(source: str) -> Template:
    """A template compiled once per process: versions never change, so neither do sources."""
    return compile_template(source)


@functools.lru_cache(maxsize=1024)
def validator_for(schema_json: bytes) -> jsonschema.Draft202012Validator:
    """One validator per distinct schema (keyed by its sorted JSON) per process."""
    return jsonschema.Draft202012Validator(orjson.loads(schema_json))


def json_path(parts) -> str:
    """A JSON Schema error's location as `$.a.b[2]`."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def variable_errors(schema: dict, variables: object) -> dict[str, str]:
    """The variables' breaches of the schema, one message per invalid field by JSON path."""
    if not isinstance(variables, dict):
        return {"$": "the variables must be a JSON object"}
    validator = validator_for(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    return {json_path(e.absolute_path): e.message for e in validator.iter_errors(variables)}


def render_messages(messages: list[dict[str, str]], schema: dict, variables: object
                    ) -> list[dict[str, str]]:  # fmt: skip
    """Messages for these variables, after checking them against the schema."""
    errors = variable_errors(schema, variables)
    if errors:
        raise VariablesInvalid(errors)
    try:
        return [
            {"role": m["role"], "content": compiled(m["content"]).render(variables)}
            for m in messages
        ]
    except TemplateError as exc:
        raise VariablesInvalid({"$": exc.message}) from exc


def render(version: PromptVersion, variables: object) -> list[dict[str, str]]:
    """The version's messages for these variables, after checking them against its schema."""
    return render_messages(version.messages, version.input_schema, variables)


def version_diff(older: PromptVersion, newer: PromptVersion) -> str:
    """A unified diff of two versions: messages, model, parameters and schemas."""

    def lines(version: PromptVersion) -> list[str]:
        body = {
            "model": version.model, "parameters": version.parameters,
            "messages": version.messages, "input_schema": version.input_schema,
            "output_format": version.output_format, "output_schema": version.output_schema,
        }  # fmt: skip
        return json.dumps(body, indent=2, sort_keys=True).splitlines()

    return "\n".join(
        difflib.unified_diff(
            lines(older), lines(newer), f"v{older.number}", f"v{newer.number}", lineterm=""
        )  # fmt: skip
    )

"""The prompt playground: run a version (and optionally a second one beside it) on variables
typed into a form generated from the version's input schema, the answers streaming in.

The page is ordinary sync Django. The run is an async view (the site is served by ASGI) that
hands the call to the gateway, `gateway.prompt_calls.playground`, which goes through the real
pipeline (routing, limits, usage charged to the tenant) and answers SSE; the view relays it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from gateway.prompt_calls import playground as run_version
from portal import access
from portal.views.common import portal_view, tenant_page
from prompts.models import Prompt, PromptVersion

DEFAULT_LABEL = "production"
SHORT_TEXT = 200  # a string with maxLength up to this is an <input>, longer ones a <textarea>


# --- the form generated from a version's input schema ------------------------------------


@dataclass(frozen=True)
class VariableField:
    """One form control for one top-level property of the input schema."""

    name: str
    dom_id: str
    label: str
    kind: str  # text | textarea | enum | integer | number | boolean | json
    required: bool
    help: str = ""
    value: str = ""  # the initial value, as the control shows it
    choices: tuple[tuple[str, str], ...] = ()  # enum: (JSON-encoded value, label)
    minimum: Any = None
    maximum: Any = None
    max_length: int | None = None

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


def _type_of(spec: dict) -> str | None:
    """The schema's type; of a union such as ["string", "null"], the first that is not null."""
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _kind(spec: dict) -> str:
    kind = _type_of(spec)
    if isinstance(spec.get("enum"), list) and spec["enum"]:
        return "enum"
    if kind == "string":
        max_length = spec.get("maxLength")
        short = isinstance(max_length, int) and max_length <= SHORT_TEXT
        return "text" if short else "textarea"
    if kind in ("integer", "number", "boolean"):
        return kind
    return "json"  # object, array, or no type at all: the value is typed as JSON


def _initial(kind: str, spec: dict) -> str:
    if "default" not in spec:
        return ""
    default = spec["default"]
    if kind == "enum":
        return json.dumps(default)
    if kind in ("text", "textarea") and isinstance(default, str):
        return default
    if kind == "boolean":
        return "true" if default is True else ""
    return json.dumps(default, indent=2) if kind == "json" else str(default)


def schema_fields(schema: object) -> list[VariableField]:
    """The form of a version: one field per top-level property of its input schema."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return []
    properties = schema["properties"]
    required = [name for name in schema.get("required") or [] if name in properties]
    # PostgreSQL's jsonb does not keep the order of keys, but it keeps the order of a list:
    # the required fields come first, as listed, then the others by name.
    names = [*dict.fromkeys(required), *sorted(set(properties) - set(required))]
    fields = []
    for n, name in enumerate(names):
        spec = properties[name] if isinstance(properties[name], dict) else {}
        kind = _kind(spec)
        choices = tuple((json.dumps(v), str(v)) for v in spec["enum"]) if kind == "enum" else ()
        fields.append(
            VariableField(
                name=name,
                dom_id=f"var-{n}",
                label=str(spec.get("title") or name),
                kind=kind,
                required=name in required,
                help=str(spec.get("description") or ""),
                value=_initial(kind, spec),
                choices=choices,
                minimum=spec.get("minimum"),
                maximum=spec.get("maximum"),
                max_length=spec.get("maxLength"),
            )  # fmt: skip
        )
    return fields


# --- the page -------------------------------------------------------------------------------


def _prompt_of(tenant, slug: str) -> Prompt:
    return get_object_or_404(Prompt, tenant=tenant, slug=slug)


def _option_label(version: PromptVersion) -> str:
    labels = sorted(label.name for label in version.labels.all())
    return f"v{version.number}" + (f" ({', '.join(labels)})" if labels else "")


def _pick(versions: list[PromptVersion], number: str | None) -> PromptVersion | None:
    if number and number.isdigit():
        return next((v for v in versions if v.number == int(number)), None)
    return None


def _default(versions: list[PromptVersion]) -> PromptVersion | None:
    for version in versions:
        if any(label.name == DEFAULT_LABEL for label in version.labels.all()):
            return version
    return versions[-1] if versions else None


@require_GET
@portal_view
def playground(request, slug, prompt):
    """Any member may look; running needs `prompt.manage`. ?version=N&compare=M pick them."""
    tenant = tenant_page(request, slug, "tenant.view")
    found = _prompt_of(tenant, prompt)
    versions = list(found.versions.prefetch_related("labels"))
    chosen = _pick(versions, request.GET.get("version")) or _default(versions)
    compare = _pick(versions, request.GET.get("compare"))
    context = {
        "tenant": tenant,
        "prompt": found,
        "options": [(v.number, _option_label(v)) for v in versions],
        "version": chosen,
        "compare": compare,
        "panes": [(pane, v) for pane, v in (("a", chosen), ("b", compare)) if v is not None],
        "fields": schema_fields(chosen.input_schema) if chosen else [],
        "can_run": access.can(request.user, tenant, "prompt.manage"),
    }
    return render(request, "prompts/playground.html", context)


# --- the run --------------------------------------------------------------------------------


class RunRefused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _error(status: int, kind: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": kind, "code": None}}, status=status)


def _parse(body: bytes) -> tuple[int, object]:
    """{"version": number, "variables": {...}} -> (number, variables)."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunRefused(400, "invalid_request_error", "The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise RunRefused(400, "invalid_request_error", 'Send {"version": N, "variables": {}}.')
    number = data.get("version")
    if not isinstance(number, int) or isinstance(number, bool):
        raise RunRefused(400, "invalid_request_error", "'version' must be a version number.")
    return number, data.get("variables", {})


def _run_target(user, slug: str, prompt: str, body: bytes) -> tuple[PromptVersion, object]:
    """The door of a run: 404 for strangers, 403 without `prompt.manage`, then 400 for a bad
    body or a version the prompt lacks. Returns the version and the variables."""
    try:
        tenant = access.access_tenant_by_slug(user, slug)
        access.require(user, tenant, "prompt.manage")
        found = _prompt_of(tenant, prompt)
    except Http404 as exc:
        raise RunRefused(404, "not_found_error", "No such prompt.") from exc
    except access.Denied as exc:
        raise RunRefused(403, "permission_error", str(exc)) from exc
    number, variables = _parse(body)
    version = found.versions.select_related("prompt__tenant").filter(number=number).first()
    if version is None:
        raise RunRefused(400, "invalid_request_error", f"The prompt has no version {number}.")
    return version, variables


def _request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    return next((v.decode() for k, v in headers if k.lower() == b"x-request-id"), None)


@require_POST
async def playground_run(request, slug, prompt):
    """Run one version on the posted variables: the gateway's SSE relayed, or its JSON error."""
    user = await request.auser()
    if not user.is_authenticated:
        return _error(401, "authentication_error", "Log in to run prompts.")
    try:
        body = request.body
    except RawPostDataException:  # a form post: the CSRF check has read the stream already
        body = b""
    try:
        version, variables = await sync_to_async(_run_target)(user, slug, prompt, body)
    except RunRefused as refused:
        return _error(refused.status, refused.kind, refused.message)
    tenant = version.prompt.tenant
    request_id = uuid.uuid4().hex
    reply = await run_version(
        tenant_id=tenant.pk, tenant_slug=tenant.slug, version_id=version.pk,
        variables=variables, request_id=request_id,
    )  # fmt: skip
    content_type = reply.content_type.decode()
    if reply.stream is None:
        response = HttpResponse(reply.body, status=reply.status, content_type=content_type)
    else:
        response = StreamingHttpResponse(
            reply.stream, status=reply.status, content_type=content_type
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the deltas back
    response["X-Request-Id"] = _request_id(reply.headers) or request_id
    return response

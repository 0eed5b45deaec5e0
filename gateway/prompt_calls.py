"""Prompt APIs: POST /api/p/{tenant}/{slug}[/v/{version}] runs a published prompt or chain.

The body is the variables. Each step is one chat request through `pipeline.serve`, so routing,
limits, guardrails and the cache apply as to any gateway call; every step runs under its own
record, folded into the call's one usage event (which lists the steps). The answer is
`{output, usage, request_id, version, model}`, or SSE when the caller asks for a stream:
`delta` events, a `step` event per chain step, then `done` (or `error`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

from gateway import auth, metadata
from gateway.errors import GatewayError, invalid
from gateway.pipeline import Call, Reply, decode_json, serve
from gateway.prompt_wire import SSE, PromptCodec, event, usage_json
from gateway.schemas import ChatRequest, ChatResponse, Message, ResponseFormat, TextPart
from gateway.usage import UsageRecord
from gateway.usage import emit as emit_usage
from prompts import chains, experiments, runtime
from prompts.runtime import ApiPlan, OutputInvalid, StepPlan, VersionPlan
from prompts.templating import TemplateError

CODEC = PromptCodec()
NO_CACHE = b"no-cache"  # a retry after an invalid answer must not get that answer back


@dataclass
class Run:
    """One call: who calls, its usage record, and what its steps did."""

    principal: auth.Principal
    record: UsageRecord
    headers: dict[bytes, bytes]
    steps: list[dict[str, Any]] = field(default_factory=list)

    def granted(self, model: str) -> auth.Principal:
        # Publishing a prompt grants its callers the prompt's model, through the prompt only.
        return replace(self.principal, allowed_models=self.principal.allowed_models | {model})


async def call_api(call: Call, tenant: str, slug: str, version: str | None) -> Reply:
    record = call.record
    principal = await auth.caller(call.headers, record)
    plan = await _load(tenant, slug, int(version) if version else None)
    if plan.product_id not in principal.products:
        raise GatewayError(
            "permission",
            f"This key's application is not subscribed to '{plan.product_name}'. Subscribe it "
            "in the portal's catalog.",
            code="subscription_required",
        )
    variables = decode_json(call.body)
    metadata.apply(call.headers, ChatRequest(model="", messages=()), record)
    errors = runtime.plan_variable_errors(plan, variables)
    if errors:
        raise _variables_invalid(errors)
    run = Run(principal, record, call.headers)
    record.prompt = {"api": plan.slug, "steps": run.steps}
    stream = _wants_stream(call)
    if plan.is_chain:
        record.public_model = f"chain:{plan.slug}"
        if stream:
            return _streaming(_chain_stream(run, plan, variables), record)
        return _answer_reply(run, *await _chain(run, plan, variables))
    chosen = _version(plan, run)
    messages = _render(chosen, variables)
    record.public_model = chosen.model
    if stream and chosen.output_format != "json":
        opened = await _open(run, chosen, messages)
        return _streaming(_single_stream(run, chosen, opened), record)
    output, resp = await _checked(run, chosen, messages)
    if stream:  # a JSON answer is checked (and perhaps asked again) before any of it is sent
        return _streaming(_whole(run, chosen, output, _text(resp)), record)
    return _answer_reply(run, output, chosen, resp.model)


async def playground(
    *, tenant_id: int, tenant_slug: str, version_id: int, variables: object,
    request_id: str | None = None,
) -> Reply:  # fmt: skip
    """Run any version of the tenant's prompts for the portal's playground, as a stream;
    accounted to the tenant (no key), with route `playground`."""
    import uuid

    record = UsageRecord.begin(request_id or uuid.uuid4().hex, "playground")
    record.tenant_id = tenant_id
    try:
        version = await sync_to_async(runtime.load_version)(version_id, tenant_id)
        if version is None:
            raise GatewayError("not_found", "No such version.", code="version_not_found")
        messages = _render(version, variables)
        principal = auth.Principal(
            key_id=0, tenant_id=tenant_id, tenant_slug=tenant_slug, all_models=False,
            allowed_models=frozenset({version.model}),
        )  # fmt: skip
        run = Run(principal, record, {})
        record.prompt = {"playground": True, "prompt": version.prompt, "steps": run.steps}
        record.public_model = version.model
        opened = await _open(run, version, messages)
    except GatewayError as err:
        record.status, record.error_type = err.status, err.kind
        emit_usage(record)
        return Reply(err.status, [], orjson.dumps(CODEC.render_error(err)))
    return _streaming(_emitted(_single_stream(run, version, opened), record), record)


async def _emitted(stream: AsyncIterator[bytes], record: UsageRecord) -> AsyncIterator[bytes]:
    """The playground has no consumer to send the event of a run cut short: send it here."""
    try:
        async for data in stream:
            yield data
    except BaseException:
        record.status, record.error_type = 499, "client_disconnected"
        raise
    finally:
        emit_usage(record)


# --- choosing and rendering ----------------------------------------------------------


# What each process read of an API, kept GATEWAY_CATALOG_CACHE_SECONDS: a label move, a new
# experiment or a retired product applies within that time, like the catalog's changes.
_plans: dict[tuple[str, str, int | None], tuple[float, ApiPlan | None | str]] = {}
MAX_CACHED_PLANS = 10_000


def forget() -> None:
    _plans.clear()


async def _load(tenant: str, slug: str, number: int | None) -> ApiPlan:
    key = (tenant, slug, number)
    cached = _plans.get(key)
    if cached is not None and cached[0] > time.monotonic():
        found = cached[1]
    else:
        try:
            found = await sync_to_async(runtime.load_api, thread_sensitive=False)(*key)
        except runtime.VersionNotFound as exc:
            found = str(exc)
        if len(_plans) >= MAX_CACHED_PLANS:
            _plans.clear()  # bounded: a flood of made-up paths must not grow memory
        _plans[key] = (time.monotonic() + settings.GATEWAY_CATALOG_CACHE_SECONDS, found)
    if isinstance(found, str):
        raise GatewayError("not_found", found, code="version_not_found")
    plan = found
    if plan is None:
        raise GatewayError(
            "not_found", f"There is no prompt API at /api/p/{tenant}/{slug}.", code="api_not_found"
        )
    return plan


def _version(plan: ApiPlan, run: Run) -> VersionPlan:
    """The label's version, or an experiment arm, the same one for the same end user."""
    assert plan.version is not None
    if not plan.arms:
        run.record.prompt.update(prompt=plan.version.prompt, version=plan.version.number)
        return plan.version
    sticky = run.record.end_user or f"key:{run.principal.key_id}"
    arm = plan.arms[experiments.pick(plan.experiment_id, [a.weight for a in plan.arms], sticky)]
    run.record.prompt.update(
        prompt=arm.version.prompt, version=arm.version.number,
        experiment=plan.experiment_id, arm=arm.id,
    )  # fmt: skip
    return arm.version


def _render(version: VersionPlan, variables: object) -> list[dict[str, str]]:
    from prompts.services import VariablesInvalid, render_messages

    try:
        return render_messages(version.messages, version.input_schema, variables)
    except VariablesInvalid as exc:
        raise _variables_invalid(
            [{"path": path, "message": message} for path, message in exc.errors.items()]
        ) from exc


ERRORS_SHOWN, ERROR_CHARS = 20, 300  # jsonschema quotes the offending value whole


def _variables_invalid(errors: list[dict[str, str]]) -> GatewayError:
    """The answer names each problem; it does not echo a 10 MB variable back (twice)."""
    errors = [{**e, "message": _clip(e["message"])} for e in errors[:ERRORS_SHOWN]]
    err = invalid(
        "The variables do not match the API's input schema: "
        + "; ".join(f"{e['path']}: {e['message']}" for e in errors)
    )
    err.code, err.errors = "invalid_variables", errors
    return err


def _clip(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "…"


def _wants_stream(call: Call) -> bool:
    accept = call.headers.get(b"accept", b"")
    return b"text/event-stream" in accept or b"stream=true" in call.query.split(b"&")


def _request(version: VersionPlan, messages: list[dict[str, str]], stream: bool,
             user: str) -> ChatRequest:  # fmt: skip
    params = version.parameters
    response_format = None
    if version.output_format == "json":
        response_format = (
            ResponseFormat("json_schema", schema=version.output_schema, name="output")
            if version.output_schema
            else ResponseFormat("json_object")
        )
    stop = params.get("stop") or ()
    return ChatRequest(
        model=version.model,
        messages=tuple(
            Message(role=m["role"], content=(TextPart(m["content"]),)) for m in messages
        ),
        stream=stream, max_tokens=params.get("max_tokens"),
        temperature=params.get("temperature"), top_p=params.get("top_p"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop), seed=params.get("seed"),
        user=user or None, response_format=response_format, include_usage=True,
        extra={k: params[k] for k in ("presence_penalty", "frequency_penalty") if k in params},
    )  # fmt: skip


# --- running steps -------------------------------------------------------------------


def _step_record(parent: UsageRecord) -> UsageRecord:
    """A step's own record: the pipeline fills it; `_fold` adds it to the call's event. It is
    marked emitted so the pipeline never sends it as an event of its own."""
    step = UsageRecord.begin(parent.request_id, parent.route)
    step.tenant_id, step.api_key_id = parent.tenant_id, parent.api_key_id
    step.end_user, step.session_id = parent.end_user, parent.session_id
    step.trace_id, step.tags = parent.trace_id, parent.tags
    step.emitted = True
    return step


def _add(total: int | None, more: int | None) -> int | None:
    return more if total is None else total + (more or 0)


def _fold(run: Run, step: UsageRecord, version: VersionPlan, name: str) -> None:
    parent = run.record
    if step.ticket is not None:  # what emit() would have done for a record of its own
        counted = step.input_tokens is not None or step.output_tokens is not None
        tokens = (step.input_tokens or 0) + (step.output_tokens or 0)
        step.ticket.settle(tokens if counted else None, step.cost)
        step.ticket = None
    parent.input_tokens = _add(parent.input_tokens, step.input_tokens)
    parent.output_tokens = _add(parent.output_tokens, step.output_tokens)
    parent.cached_input_tokens = _add(parent.cached_input_tokens, step.cached_input_tokens)
    parent.reasoning_tokens = _add(parent.reasoning_tokens, step.reasoning_tokens)
    parent.tokens_estimated = parent.tokens_estimated or step.tokens_estimated
    if step.cost is not None:
        parent.cost = (parent.cost or Decimal(0)) + step.cost
    parent.attempts.extend(step.attempts)
    parent.provider, parent.upstream_model = step.provider, step.upstream_model
    parent.served_model, parent.routing = step.served_model, step.routing
    parent.cache = step.cache or parent.cache
    if step.cache_saved is not None:
        parent.cache_saved = (parent.cache_saved or Decimal(0)) + step.cache_saved
    for key, value in step.guardrails.items():
        parent.guardrails.setdefault(key, value)
    for stage, ms in step.timings.items():  # a chain's stages add up
        parent.timings[stage] = round(parent.timings.get(stage, 0) + ms, 3)
    if step.bodies is not None:
        parent.bodies = step.bodies  # the call log keeps the last step's
    if step.status >= 400:
        parent.status, parent.error_type = step.status, step.error_type
    run.steps.append({
        "name": name, "prompt": version.prompt, "version": version.number,
        "model": version.model, "input_tokens": step.input_tokens,
        "output_tokens": step.output_tokens,
        "cost": str(step.cost) if step.cost is not None else None,
        "latency_ms": round((time.perf_counter() - step.started) * 1000, 1),
        "status": step.status, "cache": step.cache,
    })  # fmt: skip


async def _answer(run: Run, version: VersionPlan, messages: list[dict[str, str]], name: str,
                  retry: bool = False) -> ChatResponse:  # fmt: skip
    step = _step_record(run.record)
    answers: list[ChatResponse] = []

    async def keep(resp: ChatResponse) -> None:
        answers.append(resp)

    headers = {**run.headers, b"x-waystation-cache": NO_CACHE} if retry else run.headers
    req = _request(version, messages, stream=False, user=run.record.end_user)
    try:
        await serve(Call(headers, b"", step), run.granted(version.model), req, CODEC, keep)
    except GatewayError as err:
        step.status, step.error_type = err.status, err.kind
        raise
    finally:
        _fold(run, step, version, name)
    return answers[0]


async def _checked(run: Run, version: VersionPlan, messages: list[dict[str, str]],
                   name: str = "") -> tuple[Any, ChatResponse]:  # fmt: skip
    """The step's output; a JSON answer that breaks the schema is asked for once more."""
    reason = ""
    for retry in (False, True):
        resp = await _answer(run, version, messages, name, retry)
        try:
            return runtime.parse_output(version, _text(resp)), resp
        except OutputInvalid as exc:
            reason = str(exc)
    raise _invalid_output(reason, name)


def _invalid_output(reason: str, name: str = "") -> GatewayError:
    where = f"Step '{name}': the" if name else "The"
    return GatewayError(
        "upstream_error", f"{where} model's answer was invalid: {reason}.", status=502,
        code="invalid_output",
    )  # fmt: skip


def _text(resp: ChatResponse) -> str:
    return resp.choices[0].message.text if resp.choices else ""


@dataclass
class _Opened:
    step: UsageRecord
    reply: Reply
    answers: list[ChatResponse]
    name: str


async def _open(run: Run, version: VersionPlan, messages: list[dict[str, str]],
                name: str = "") -> _Opened:  # fmt: skip
    step = _step_record(run.record)
    answers: list[ChatResponse] = []

    async def keep(resp: ChatResponse) -> None:
        answers.append(resp)

    req = _request(version, messages, stream=True, user=run.record.end_user)
    codec = PromptCodec(step=name) if name else CODEC
    try:
        reply = await serve(Call(run.headers, b"", step), run.granted(version.model), req, codec,
                            keep)  # fmt: skip
    except GatewayError as err:
        step.status, step.error_type = err.status, err.kind
        _fold(run, step, version, name)
        raise
    return _Opened(step, reply, answers, name)


async def _drain(run: Run, version: VersionPlan, opened: _Opened) -> AsyncIterator[bytes]:
    assert opened.reply.stream is not None
    try:
        async for data in opened.reply.stream:
            if data:
                run.record.mark_first_token()
                yield data
    finally:
        _fold(run, opened.step, version, opened.name)


async def _single_stream(run: Run, version: VersionPlan, opened: _Opened) -> AsyncIterator[bytes]:
    async for data in _drain(run, version, opened):
        yield data
    if run.record.status >= 400:  # the error event went out with the stream
        return
    try:
        output = runtime.parse_output(version, _text(opened.answers[0]))
    except OutputInvalid as exc:
        yield _error_event(run.record, _invalid_output(str(exc)))
        return
    yield _done_event(run, output, version)


async def _whole(run: Run, version: VersionPlan, output: Any, text: str) -> AsyncIterator[bytes]:
    yield event("delta", {"text": text})
    yield _done_event(run, output, version)


# --- chains --------------------------------------------------------------------------


def _context(variables: object) -> dict[str, Any]:
    return {"input": variables, "steps": {}}


def _step_input(step: StepPlan, context: dict[str, Any]) -> list[dict[str, str]] | None:
    """The step's messages, or None when its condition does not hold."""
    try:
        if not chains.step_runs(_as_dict(step), context):
            return None
        variables = chains.step_variables(_as_dict(step), context)
    except TemplateError as exc:
        raise _chain_failed(step.name, exc.message) from exc
    try:
        return _render(step.version, variables)
    except GatewayError as exc:
        raise _chain_failed(step.name, exc.message) from exc


def _as_dict(step: StepPlan) -> dict[str, Any]:
    return {"variables": step.variables, "when": step.when}


def _chain_failed(name: str, reason: str) -> GatewayError:
    return GatewayError(
        "upstream_error", f"Chain step '{name}' could not be prepared: {reason}", status=502,
        code="chain_step_failed",
    )  # fmt: skip


def _skipped(run: Run, step: StepPlan, context: dict[str, Any]) -> None:
    context["steps"][step.name] = {"output": None, "skipped": True}
    run.steps.append({"name": step.name, "prompt": step.version.prompt,
                      "version": step.version.number, "skipped": True})  # fmt: skip


async def _chain(run: Run, plan: ApiPlan, variables: object) -> tuple[Any, VersionPlan, str]:
    context = _context(variables)
    output, last, model = None, plan.steps[-1].version, ""
    for step in plan.steps:
        messages = _step_input(step, context)
        if messages is None:
            _skipped(run, step, context)
            continue
        output, resp = await _checked(run, step.version, messages, step.name)
        context["steps"][step.name] = {"output": output, "skipped": False}
        run.steps[-1]["output"] = output
        last, model = step.version, resp.model
    return output, last, model


async def _chain_stream(run: Run, plan: ApiPlan, variables: object) -> AsyncIterator[bytes]:
    context = _context(variables)
    output, last = None, plan.steps[-1].version
    try:
        for step in plan.steps:
            messages = _step_input(step, context)
            if messages is None:
                _skipped(run, step, context)
                yield event("step", {"name": step.name, "output": None, "skipped": True})
                continue
            if step.version.output_format == "json":
                output, resp = await _checked(run, step.version, messages, step.name)
                yield event("delta", {"text": _text(resp), "step": step.name})
            else:
                opened = await _open(run, step.version, messages, step.name)
                async for data in _drain(run, step.version, opened):
                    yield data
                if run.record.status >= 400:
                    return
                output = _text(opened.answers[0])
            context["steps"][step.name] = {"output": output, "skipped": False}
            run.steps[-1]["output"] = output
            last = step.version
            yield event("step", {"name": step.name, "output": output, "skipped": False})
    except GatewayError as err:
        yield _error_event(run.record, err)
        return
    yield _done_event(run, output, last)


# --- answers -------------------------------------------------------------------------


def _answer_json(run: Run, output: Any, version: VersionPlan, model: str = "") -> dict:
    record = run.record
    body = {
        "output": output, "usage": usage_json(record), "request_id": record.request_id,
        "version": version.number, "model": model or record.upstream_model or version.model,
    }  # fmt: skip
    if record.public_model.startswith("chain:"):
        body.pop("version")
        body["steps"] = [
            {k: s.get(k) for k in ("name", "prompt", "version", "output", "skipped")}
            for s in run.steps
        ]
    return body


def _answer_reply(run: Run, output: Any, version: VersionPlan, model: str) -> Reply:
    return Reply(200, [], orjson.dumps(_answer_json(run, output, version, model)))


def _done_event(run: Run, output: Any, version: VersionPlan) -> bytes:
    body = _answer_json(run, output, version)
    emit_usage(run.record)  # before the client has its last bytes
    body["latency_ms"] = round(run.record.latency_ms, 1)
    body["ttft_ms"] = round(run.record.ttft_ms, 1) if run.record.ttft_ms is not None else None
    return event("done", body)


def _error_event(record: UsageRecord, err: GatewayError) -> bytes:
    record.status, record.error_type = err.status, err.kind
    emit_usage(record)
    return event("error", CODEC.render_error(err))


def _streaming(stream: AsyncIterator[bytes], record: UsageRecord) -> Reply:
    return Reply(200, [], stream=stream, content_type=SSE)

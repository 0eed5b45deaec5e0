"""The hot path, one readable sequence per route: auth -> parse -> model -> route -> respond.

Every step raises GatewayError on failure; the consumer renders it in the route's format.
The usage record is filled in as the steps run and emitted exactly once, before the client
has its last byte.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

import orjson

from billing.pricing import PriceEntry, cost_of
from gateway import (
    auth,
    call_log,
    catalog,
    choice,
    drain,
    limits,
    metadata,
    router,
    tokens,
    tracing,
)
from gateway.cache import entries as cache_entries
from gateway.cache import service as response_cache
from gateway.catalog import ModelEntry, Target
from gateway.context import service as context
from gateway.errors import GatewayError, invalid
from gateway.guardrails.service import Guard
from gateway.providers.base import ClientCodec
from gateway.providers.openai import embeddings as openai_embeddings
from gateway.relay import StreamRelay, TranslatingRelay
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Usage,
)
from gateway.usage import UsageRecord
from gateway.usage import emit as emit_usage


@dataclass
class Call:
    headers: dict[bytes, bytes]
    body: bytes
    record: UsageRecord
    method: str = "POST"
    query: bytes = b""


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    content_type: bytes = b"application/json"


# orjson reads 1024 levels but writes only 254, and repr() and asdict() recurse: a body nested
# deeper than this would fail later (going upstream, in the call log, in an error message) as a
# 500. tests/security/test_fuzz_gateway.py holds decode_json to exactly this depth.
MAX_JSON_DEPTH = 128
ORJSON_MAX_DEPTH = 254


def decode_json(body: bytes) -> object:
    if not body:
        raise invalid("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}.") from exc
    # Counting brackets is C-fast and rules out deep nesting for almost every body.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(value):
        raise invalid(f"The request body nests arrays and objects over {MAX_JSON_DEPTH} deep.")
    return value


def _too_deep(value: object) -> bool:
    """Whether arrays and objects nest over MAX_JSON_DEPTH levels. orjson measures it, in C (a
    walk in Python takes most of a second on a body of many small objects): under
    ORJSON_MAX_DEPTH - MAX_JSON_DEPTH levels of wrapping, it refuses exactly those values."""
    wrapped = value
    for _ in range(ORJSON_MAX_DEPTH - MAX_JSON_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def _attribute(record: UsageRecord, target: Target, upstream_model: str = "") -> None:
    record.provider = target.provider
    record.upstream_model = upstream_model or target.credentials.upstream_model
    record.served_model = next(
        (a["model"] for a in reversed(record.attempts) if a["outcome"] == "ok"),
        record.public_model,
    )


def _route_headers(record: UsageRecord) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-waystation-provider", record.provider.encode()),
        (b"x-waystation-model", record.upstream_model.encode()),
        (b"x-waystation-attempts", str(len(record.attempts)).encode()),
    ]
    if record.ticket is not None:
        headers += record.ticket.headers
    if record.routing:
        headers.append((b"x-waystation-route", record.routing.encode("latin-1", "replace")))
    if record.cost is not None:
        headers.append((b"x-waystation-cost", f"{record.cost:f}".encode()))
    return headers


async def chat(call: Call, codec: ClientCodec) -> Reply:
    record = call.record
    principal = await auth.caller(call.headers, record)
    req = codec.parse_request(decode_json(call.body))
    req = metadata.apply(call.headers, req, record)
    after = None
    if "conversation" in req.extra:
        turn = await conversation_turn(principal, req)
        req = turn.request

        async def after(resp: ChatResponse) -> None:
            await context.finish(turn, resp, record.request_id, req.model)

    return await serve(call, principal, req, codec, after)


Answered = Callable[[ChatResponse], Awaitable[None]]


async def serve(
    call: Call,
    principal: auth.Principal,
    req: ChatRequest,
    codec: ClientCodec,
    after: Answered | None = None,
) -> Reply:
    """Route, cache and relay one chat request; `after` gets the whole answer once it is in
    (before the client's last bytes), e.g. to store a conversation turn."""
    record = call.record
    record.public_model, record.stream = req.model, req.stream
    guard = await _guard(principal, record)
    if guard is not None:
        started = time.perf_counter()
        with tracing.span("guardrails.input"):
            req = guard.screen_input(req)
        _took(record, "guardrails_ms", started)
    if call_log.wanted(principal, req.model):
        record.bodies = call_log.Bodies(req)  # as it goes upstream: redacted
    chosen = await choice.choose(principal, req, call.headers)
    entry, record.routing = chosen.entry, chosen.reason
    if principal.limits or principal.budgets:
        prompt = tokens.estimate_prompt_tokens(req)
        with tracing.span("limits.admit"):
            await _admit(principal, record, entry, prompt, req.max_tokens or DEFAULT_ANSWER_TOKENS)
    started = time.perf_counter()
    with tracing.span("cache.lookup"):
        lookup = await response_cache.consult(principal, req, call.headers)
    _took(record, "cache_ms", started)
    if lookup is not None:
        record.cache = lookup.status
        if lookup.hit is not None:
            if record.bodies is not None:
                record.bodies.response = lookup.hit.response
            shown = _shown(lookup.hit.response, guard, req.stream)
            if after is not None:
                await after(shown)
            return _from_cache(lookup, codec, req, record, shown, guard)
    started = time.perf_counter()
    if req.stream:
        with tracing.span("upstream.open_stream", model=entry.name):
            opened = await router.open_stream(entry, req, record.attempts)
        _took(record, "upstream_ms", started)  # until the answer's headers
        _attribute(record, opened.target)
        stream = _relay(opened, codec, req, record, lookup, after, guard)
        headers = _route_headers(record) + _cache_headers(lookup)
        return Reply(200, headers, stream=stream, content_type=b"text/event-stream")
    with tracing.span("upstream.complete", model=entry.name):
        resp, target = await router.complete(entry, req, record.attempts)
    _took(record, "upstream_ms", started)
    if record.bodies is not None:
        record.bodies.response = resp  # as answered: placeholders, not the caller's values
    _attribute(record, target, resp.model)
    _account(record, target.price, req, resp.usage, _response_text(resp))
    if lookup is not None and lookup.stores:
        await response_cache.save(lookup, req, resp, record.cost)  # as answered: placeholders in
    resp = _shown(resp, guard, streamed=False)
    if after is not None:
        await after(resp)
    body = orjson.dumps(codec.render_response(resp, req.model))
    return Reply(200, _route_headers(record) + _cache_headers(lookup), body)


def _took(record: UsageRecord, stage: str, started: float) -> None:
    record.timings[stage] = round((time.perf_counter() - started) * 1000, 3)


async def _guard(principal: auth.Principal, record: UsageRecord) -> Guard | None:
    snapshot = await catalog.current()
    checks = snapshot.guardrail_checks(principal.tenant_id, principal.key_id, principal.products)
    return Guard(checks, record.guardrails) if checks else None


def _shown(resp: ChatResponse, guard: Guard | None, streamed: bool) -> ChatResponse:
    """The answer as the caller gets it. A streamed one was screened as it streamed, so it
    only needs the caller's redacted values back (for storing the conversation turn)."""
    if guard is None:
        return resp
    return guard.restored(resp) if streamed else guard.screen_response(resp)


async def conversation_turn(principal: auth.Principal, req: ChatRequest) -> context.Turn:
    """A chat request naming `conversation`: its messages are the turn's new input, but for
    leading system messages, which instruct this turn only."""
    ref = req.extra["conversation"]
    if isinstance(ref, dict):
        ref = ref.get("id")
    if not isinstance(ref, str) or not ref:
        raise invalid("'conversation' must be a conversation id or {\"id\": ...}.", "conversation")
    conversation = await context.find(principal, ref)
    lead = 0
    while lead < len(req.messages) and req.messages[lead].role == "system":
        lead += 1
    instructions, new = req.messages[:lead], req.messages[lead:]
    if not new:
        raise invalid(
            "A conversation turn needs at least one message besides system ones.", "messages"
        )
    return await context.begin(principal, conversation, replace(req, messages=new), instructions)


def _cache_headers(lookup: response_cache.Lookup | None) -> list[tuple[bytes, bytes]]:
    return lookup.headers() if lookup is not None else []


def _from_cache(
    lookup: response_cache.Lookup,
    codec: ClientCodec,
    req: ChatRequest,
    record: UsageRecord,
    shown: ChatResponse,
    guard: Guard | None,
) -> Reply:
    """Answer from the cache: nothing goes upstream; the tenant pays the hit price, if any."""
    hit = lookup.hit
    fresh = {"id": f"cache-{uuid.uuid4().hex[:24]}", "created": int(time.time())}
    resp = replace(hit.response, **fresh)
    record.provider, record.upstream_model, record.served_model = "cache", resp.model, req.model
    record.set_usage(Usage(0, 0))
    record.cost = lookup.policy.hit_price or Decimal(0)
    record.cache_saved = hit.saved
    headers = _route_headers(record) + lookup.headers()
    if not req.stream:
        body = codec.render_response(replace(shown, **fresh), req.model)
        return Reply(200, headers, orjson.dumps(body))
    encoder = codec.new_stream_encoder(req, record.request_id, req.model)
    if guard is not None and guard.screens_output:
        encoder = guard.stream_encoder(encoder)
    stream = _replay(cache_entries.replay_events(resp), encoder, record)
    return Reply(200, headers, stream=stream, content_type=b"text/event-stream")


async def _replay(events: list, encoder, record: UsageRecord) -> AsyncIterator[bytes]:
    record.mark_first_token()
    yield b"".join(encoder.encode(event) for event in events)
    emit_usage(record)
    yield encoder.finish()


DEFAULT_ANSWER_TOKENS = 256  # reserved for an answer whose max_tokens isn't given


async def _admit(
    principal: auth.Principal, record: UsageRecord, entry: ModelEntry, prompt: int, answer: int
) -> None:
    """Charge the estimate against the caller's limits and budgets; settled at emit."""
    price = entry.price or next((t.price for t in entry.targets if t.price), None)
    cost = cost_of(Usage(prompt, answer), price) or Decimal(0)
    record.ticket = await limits.admit(
        request_id=record.request_id,
        limits=principal.limits,
        budgets=principal.budgets,
        model=record.public_model,
        estimated_tokens=prompt + answer,
        estimated_cost=cost,
    )


def _response_text(resp: ChatResponse) -> str:
    parts = []
    for answer in resp.choices:
        parts.append(answer.message.text)
        parts.extend(call.arguments for call in answer.message.tool_calls)
    return "".join(parts)


def _account(
    record: UsageRecord, price: PriceEntry | None, req: ChatRequest, usage: Usage, output_text: str
) -> None:
    """Record tokens and cost; count them ourselves where the upstream reported none."""
    estimated = False
    if usage.input_tokens is None or usage.output_tokens is None:
        estimated = True
        usage = Usage(
            input_tokens=usage.input_tokens
            if usage.input_tokens is not None
            else tokens.count_prompt_tokens(req),
            output_tokens=usage.output_tokens
            if usage.output_tokens is not None
            else tokens.count_text_tokens(output_text),
            cached_input_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
    record.set_usage(usage, estimated)
    record.cost = cost_of(usage, price)


def _new_relay(
    opened: router.OpenStream,
    codec: ClientCodec,
    req: ChatRequest,
    request_id: str,
    keep: bool,
    guard: Guard | None = None,
) -> tuple[StreamRelay, cache_entries.Recorder | None]:
    """The cheapest relay for the wires, unless the answer is to be kept or screened: that
    takes the typed events, which only the translating relay has."""
    screened = guard is not None and guard.screens_output
    relay = (
        None if keep or screened else codec.passthrough(opened.adapter, req, request_id, req.model)
    )
    if relay is not None:
        return relay, None
    encoder = codec.new_stream_encoder(req, request_id, req.model)
    if screened:
        encoder = guard.stream_encoder(encoder)
    recorder = cache_entries.Recorder(encoder) if keep else None
    return TranslatingRelay(opened.adapter.new_stream_parser(), recorder or encoder), recorder


async def _relay(
    opened: router.OpenStream,
    codec: ClientCodec,
    req: ChatRequest,
    record: UsageRecord,
    lookup: response_cache.Lookup | None,
    after: Answered | None = None,
    guard: Guard | None = None,
) -> AsyncIterator[bytes]:
    saving = lookup is not None and lookup.stores
    keep = saving or after is not None
    relay, recorder = _new_relay(opened, codec, req, record.request_id, keep, guard)
    failure: GatewayError | None = None
    try:
        async for chunk in opened.chunks():
            if drain.state.expired:
                raise drain.restarting()
            data = relay.feed(chunk)
            if relay.first_token_seen:
                record.mark_first_token()
            if data:
                yield data
        tail = relay.close()
    except GatewayError as err:
        failure = err
    except BaseException:
        record.status, record.error_type = 499, "client_disconnected"
        opened.response.abort()
        raise
    finally:
        opened.release()
        produced = relay.produced_text()
        _account(record, opened.target.price, req, relay.usage, produced)
        if record.bodies is not None:
            record.bodies.response = produced
    if failure is not None:
        record.status, record.error_type = failure.status, failure.kind
        if failure.code == drain.CODE:
            opened.response.abort()  # our restart, not the deployment's fault
        else:
            await opened.failed()
        emit_usage(record)
        yield relay.error(failure)
        return
    if recorder is not None:
        answer = cache_entries.collect(recorder.events, relay.usage)
        if answer is not None and saving:
            await response_cache.save(lookup, req, answer, record.cost)
        if answer is not None and after is not None:
            await after(_shown(answer, guard, streamed=True))
    emit_usage(record)
    yield tail


async def embeddings(call: Call) -> Reply:
    record = call.record
    principal = await auth.caller(call.headers, record)
    parsed = openai_embeddings.parse_request(decode_json(call.body))
    req = metadata.apply(call.headers, parsed.request, record)
    record.public_model = req.model
    entry = await catalog.resolve(req.model, principal.may_use(req.model), mode="embedding")
    if principal.limits or principal.budgets:
        chars = sum(len(text) for text in req.inputs)
        await _admit(principal, record, entry, chars // tokens.CHARS_PER_TOKEN, 0)
    resp, target = await router.embed(entry, req, record.attempts)
    _attribute(record, target, resp.model)
    usage = resp.usage
    if usage.input_tokens is None:
        counted = sum(tokens.count_text_tokens(text) for text in req.inputs)
        usage = Usage(input_tokens=counted, output_tokens=0)
    record.set_usage(Usage(usage.input_tokens, 0), estimated=resp.usage.input_tokens is None)
    record.cost = cost_of(Usage(usage.input_tokens, 0), target.price)
    body = orjson.dumps(openai_embeddings.render_response(resp, parsed, usage))
    return Reply(200, _route_headers(record), body)


async def list_models(call: Call, model_id: str | None) -> Reply:
    principal = await auth.caller(call.headers, call.record)
    snapshot = await catalog.current()
    visible = [m for m in snapshot.models.values() if m.servable and principal.may_use(m.name)]
    if model_id is None:
        data = [_model_json(m) for m in sorted(visible, key=lambda m: m.name)]
        return Reply(200, body=orjson.dumps({"object": "list", "data": data}))
    entry = await catalog.resolve(model_id, principal.may_use(model_id), mode="")
    return Reply(200, body=orjson.dumps(_model_json(entry)))


def _model_json(entry: ModelEntry) -> dict[str, object]:
    return {"id": entry.name, "object": "model", "created": entry.created, "owned_by": "waystation"}

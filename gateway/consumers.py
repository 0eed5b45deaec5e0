"""Channels HTTP consumers for the gateway routes: HTTP in, pipeline, HTTP out.

Each request runs in a task beside a watcher of the client connection, so a client that goes
away cancels the upstream call instead of leaving it running.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from gateway import feedback, metrics, pipeline, prompt_calls, prompt_wire, stateful, tracing, usage
from gateway.errors import GatewayError
from gateway.providers import client_codec
from gateway.providers.base import ClientCodec
from gateway.providers.openai.client import render_error as openai_error
from gateway.usage import UsageRecord
from waystation import logs

log = logging.getLogger("gateway")

T = TypeVar("T")
Handler = Callable[[pipeline.Call], Awaitable[pipeline.Reply]]


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class GatewayConsumer(AsyncHttpConsumer):
    route = "openai"
    methods = ("POST",)
    # No channel layer: a per-request channel would cost a Redis round trip for nothing.
    channel_layer_alias = "__none__"

    def handler(self) -> Handler:
        raise NotImplementedError

    def render_error(self, err: GatewayError) -> dict:
        return openai_error(err)

    async def __call__(self, scope, receive, send) -> None:
        self.scope, self.base_send = scope, send
        headers = dict(scope.get("headers") or ())
        request_id = _request_id(headers)
        logs.request_id.set(request_id)  # this request's task: every log line carries it
        record = UsageRecord.begin(request_id, self.route_name())
        try:
            with tracing.span("gateway.request", route=record.route, request_id=request_id):
                await self._serve(headers, receive, record)
        except _ClientGone:
            record.status, record.error_type = 499, "client_disconnected"
        finally:
            if self.counts_usage():
                usage.emit(record)

    def route_name(self) -> str:
        return type(self).__name__.removesuffix("Consumer").lower()

    def counts_usage(self) -> bool:
        return True

    async def _serve(self, headers: dict[bytes, bytes], receive, record: UsageRecord) -> None:
        try:
            if self.scope["method"] not in self.methods:
                raise GatewayError(
                    "invalid_request",
                    f"Method {self.scope['method']} is not allowed here.",
                    status=405,
                )
            body = await _read_body(headers, receive)
            call = pipeline.Call(
                headers, body, record, self.scope["method"], self.scope.get("query_string", b"")
            )
            work = self.handler()(call)
            reply = await _unless_gone(work, receive)
        except _BodyTooLarge:
            reply = self._error_reply(
                GatewayError(
                    "payload_too_large",
                    f"The request body exceeds {settings.GATEWAY_MAX_BODY_BYTES} bytes.",
                ),
                record,
            )
        except GatewayError as err:
            reply = self._error_reply(err, record)
        except _ClientGone:
            raise
        except Exception:
            log.exception("request %s trace=%s failed", record.request_id, record.trace_id or "-")
            reply = self._error_reply(GatewayError("internal", "Internal gateway error."), record)
        await self._send_reply(reply, record, receive)

    def _error_reply(self, err: GatewayError, record: UsageRecord) -> pipeline.Reply:
        record.status, record.error_type, record.error_code = err.status, err.kind, err.code or ""
        if record.bodies is not None:
            record.bodies.error = {"type": err.kind, "code": err.code, "message": err.message}
        level = logging.ERROR if err.status >= 500 else logging.INFO
        log.log(
            level,
            "request %s trace=%s: %s %s",
            record.request_id,
            record.trace_id or "-",
            err.status,
            err.message,
        )
        headers = []
        if err.retry_after is not None:
            headers.append((b"retry-after", str(int(err.retry_after + 0.999)).encode()))
        headers += err.headers
        return pipeline.Reply(err.status, headers, orjson.dumps(self.render_error(err)))

    async def _send_reply(self, reply: pipeline.Reply, record: UsageRecord, receive) -> None:
        headers = [
            (b"content-type", reply.content_type),
            (b"x-request-id", record.request_id.encode()),
            *reply.headers,
        ]
        if reply.stream is not None:
            headers.append((b"cache-control", b"no-cache"))
        await self.send_headers(status=reply.status, headers=headers)
        if reply.stream is None:
            if self.counts_usage():
                usage.emit(record)
            await self.send_body(reply.body)
            return
        await _unless_gone(self._pump(reply.stream), receive)

    async def _pump(self, stream) -> None:
        async for data in stream:
            await self.send_body(data, more_body=True)
        await self.send_body(b"")


def _request_id(headers: dict[bytes, bytes]) -> str:
    given = headers.get(b"x-request-id")
    if given and 0 < len(given) <= 128:
        text = given.decode("latin-1")
        if text.isprintable():
            return text
    return uuid.uuid4().hex


async def _read_body(headers: dict[bytes, bytes], receive) -> bytes:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = headers.get(b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _unless_gone(work: Awaitable[T], receive) -> T:
    """Await `work` in this task, cancelling it if the client disconnects first.

    One watcher task per request (not a task for the work as well): this runs per request on
    the hot path.
    """
    this_task = asyncio.current_task()
    assert this_task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        this_task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise _ClientGone from None
        raise
    finally:
        watcher.cancel()


class ChatCompletionsConsumer(GatewayConsumer):
    codec: ClientCodec = client_codec("openai")

    def handler(self) -> Handler:
        return lambda call: pipeline.chat(call, self.codec)

    def route_name(self) -> str:
        return "chat.completions"


class MessagesConsumer(GatewayConsumer):
    codec: ClientCodec = client_codec("anthropic")

    def handler(self) -> Handler:
        return lambda call: pipeline.chat(call, self.codec)

    def render_error(self, err: GatewayError) -> dict:
        return self.codec.render_error(err)

    def route_name(self) -> str:
        return "messages"


class EmbeddingsConsumer(GatewayConsumer):
    def handler(self) -> Handler:
        return pipeline.embeddings

    def route_name(self) -> str:
        return "embeddings"


class ModelsConsumer(GatewayConsumer):
    methods = ("GET",)

    def handler(self) -> Handler:
        model_id = self.scope["url_route"]["kwargs"].get("model_id")
        return lambda call: pipeline.list_models(call, model_id)

    def counts_usage(self) -> bool:
        return False


class NotFoundConsumer(GatewayConsumer):
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

    def handler(self) -> Handler:
        async def not_found(call: pipeline.Call) -> pipeline.Reply:
            raise GatewayError("not_found", f"No route {self.scope['path']}.")

        return not_found

    def counts_usage(self) -> bool:
        return False


class ResponsesConsumer(GatewayConsumer):
    def handler(self) -> Handler:
        return stateful.create_response

    def route_name(self) -> str:
        return "responses"


class _StateConsumer(GatewayConsumer):
    """Reads and writes of stored state: no model call, so no usage event."""

    routes: dict[tuple[str, str], Callable[..., Awaitable[pipeline.Reply]]] = {}

    def handler(self) -> Handler:
        kwargs = dict(self.scope["url_route"]["kwargs"])
        part = kwargs.pop("part", None) or ""
        found = self.routes.get((self.scope["method"], part))
        if found is None:
            allowed = sorted({m for m, p in self.routes if p == part})
            raise GatewayError(
                "invalid_request",
                f"Method {self.scope['method']} is not allowed here; use {', '.join(allowed)}.",
                status=405,
            )
        return lambda call: found(call, *kwargs.values())

    async def _serve(self, headers, receive, record) -> None:
        self.methods = tuple({m for m, _ in self.routes})
        try:
            self.handler()  # an unknown method answers 405 before the body is read
        except GatewayError as err:
            await self._send_reply(self._error_reply(err, record), record, receive)
            return
        await super()._serve(headers, receive, record)

    def counts_usage(self) -> bool:
        return False


class ResponseConsumer(_StateConsumer):
    routes = {
        ("GET", ""): stateful.get_response,
        ("DELETE", ""): stateful.delete_response,
        ("GET", "input_items"): stateful.response_input_items,
    }


class ConversationsConsumer(_StateConsumer):
    routes = {("POST", ""): stateful.create_conversation}


class ConversationConsumer(_StateConsumer):
    routes = {
        ("GET", ""): stateful.get_conversation,
        ("DELETE", ""): stateful.delete_conversation,
        ("GET", "items"): stateful.conversation_items,
        ("POST", "items"): stateful.conversation_items,
        ("POST", "documents"): stateful.add_document,
    }


class DocumentsConsumer(_StateConsumer):
    """Tenant-wide documents: a knowledge collection every conversation retrieves from."""

    routes = {("POST", ""): stateful.add_document}


class PromptApiConsumer(GatewayConsumer):
    """A published prompt or chain: POST /api/p/{tenant}/{slug}[/v/{version}]."""

    def handler(self) -> Handler:
        kwargs = self.scope["url_route"]["kwargs"]
        return lambda call: prompt_calls.call_api(
            call, kwargs["tenant"], kwargs["slug"], kwargs.get("version")
        )

    def render_error(self, err: GatewayError) -> dict:
        return prompt_wire.render_error(err)

    def route_name(self) -> str:
        return "prompt"


class FeedbackConsumer(GatewayConsumer):
    def handler(self) -> Handler:
        return feedback.post_feedback

    def counts_usage(self) -> bool:
        return False


class MetricsConsumer(AsyncHttpConsumer):
    """GET /metrics: the Prometheus exposition (gateway.metrics); no usage event.

    Plain-text refusals: 401 without the METRICS_TOKEN bearer when one is set, 403 from a
    network outside METRICS_ALLOWED_NETWORKS when none is.
    """

    channel_layer_alias = "__none__"

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] not in ("GET", "HEAD"):
            await self._plain(405, "Use GET.\n", [(b"allow", b"GET, HEAD")])
            return
        refused = metrics.refusal(dict(self.scope.get("headers") or ()), self.scope.get("client"))
        if refused is not None:
            status, reason = refused
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await self._plain(status, reason, extra)
            return
        payload, content_type = await metrics.scrape()
        if self.scope["method"] == "HEAD":
            payload = b""
        await self.send_response(200, payload, headers=[(b"content-type", content_type.encode())])

    async def _plain(self, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
        await self.send_response(status, text.encode(), headers=headers)

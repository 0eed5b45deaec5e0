"""The Responses API stream: internal stream events -> `response.*` server-sent events.

Items are emitted one after another as OpenAI does: a new item (text after a tool call, the next
tool call) closes the open one. Each frame carries `event: <type>` and a `sequence_number` that
counts from 0. The closing `response.completed` (or `response.incomplete`) carries the whole
Response, built from the very items streamed, so the SDK's accumulator finds the ids it saw.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.openai.client import render_error
from gateway.providers.openai.responses import (
    INCOMPLETE,
    ResponseInfo,
    function_call_item,
    new_id,
    output_message_item,
    output_text_part,
    response_json,
)
from gateway.providers.sse import encode_sse
from gateway.schemas import (
    ChatResponse,
    Choice,
    Finish,
    FinishReason,
    Message,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)

# ResponseError.code in the SDK is a closed set; our error kinds map onto three of its values.
FAILED_CODES = {
    "rate_limit": "rate_limit_exceeded",
    "invalid_request": "invalid_prompt",
    "context_length_exceeded": "invalid_prompt",
    "content_filter": "invalid_prompt",
}


@dataclass(slots=True)
class _Item:
    kind: str  # "message" | "function_call"
    id: str
    output_index: int
    chunks: list[str] = field(default_factory=list)  # text, or the call's arguments
    call_id: str = ""
    name: str = ""
    status: str = "in_progress"

    @property
    def value(self) -> str:
        return "".join(self.chunks)

    def json(self) -> dict[str, Any]:
        if self.kind == "message":
            return output_message_item(self.id, self.value, self.status)
        call = ToolCall(self.call_id, self.name, self.value)
        return function_call_item(self.id, call, self.status)


class ResponsesStreamEncoder:
    """One client stream. `item_id` is the id of the assistant message as it will be stored;
    the streamed items are named from it like `responses.item_ids` names a stored message's
    items, so a later listing shows the same ids (unless text arrives after a tool call, which
    Chat Completions upstreams do not send)."""

    content_type = "text/event-stream"

    def __init__(self, info: ResponseInfo, item_id: str | None = None) -> None:
        self._info = info
        self.item_id = item_id or new_id("msg")
        self._seq = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # tool-call index -> its item
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._upstream_id = ""
        self._upstream_model = ""
        # The Response object the terminal event carried (completed, incomplete or failed).
        self.final: dict[str, Any] | None = None

    @property
    def output_ids(self) -> list[str]:
        return [item.id for item in self._items]

    def encode(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        out = self._prelude()
        if isinstance(event, StreamStart):
            self._upstream_id, self._upstream_model = event.id, event.model
        elif isinstance(event, TextDelta):
            if event.text:  # upstreams open with an empty delta; it makes no item
                out += self._text(event.text)
        elif isinstance(event, ToolCallStart):
            if event.index not in self._calls:
                out += self._close_open()
                item = self._add("function_call", call_id=event.id, name=event.name)
                self._calls[event.index] = item
                out += self._emit_item("response.output_item.added", item)
        elif isinstance(event, ToolCallDelta):
            out += self._arguments(event)
        elif isinstance(event, Finish):
            self._finish = event.reason
            out += self._close_open()
        elif isinstance(event, UsageReport):
            self._usage = event.usage
        return out

    def finish(self) -> bytes:
        if self._ended:
            return b""
        out = self._prelude() + self._close_open()
        if not self._items:  # an empty answer is still one (empty) message, as when not streamed
            out += self._emit_item("response.output_item.added", self._add("message"))
            out += self._close_open()
        self._ended = True
        info = dataclasses.replace(self._info, completed_at=int(time.time()))
        body = response_json(
            info, [i.json() for i in self._items], self._usage or Usage(), self._finish
        )
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        self.final = body
        return out + self._emit(kind, response=body)

    def error(self, err: GatewayError) -> bytes:
        """`response.failed` (for clients that wait for a terminal lifecycle event), then an
        `error` event. The error's fields sit at the top level, as the SDK's ResponseErrorEvent
        reads them, and again under `error`, as OpenAI sends them: that key is what makes the
        Python SDK raise APIError."""
        if self._ended:
            return b""
        out = self._prelude()
        self._ended = True
        for item in self._items:
            if item.status == "in_progress":
                item.status = "incomplete"
        failed = {"code": FAILED_CODES.get(err.kind, "server_error"), "message": err.message}
        info = dataclasses.replace(self._info, status="failed")
        body = response_json(info, [i.json() for i in self._items], self._usage, error=failed)
        self.final = body
        out += self._emit("response.failed", response=body)
        detail = render_error(err)["error"]
        return out + self._emit(
            "error",
            code=detail["code"],
            message=err.message,
            param=err.param,
            error=detail,
        )

    def response(self) -> ChatResponse:
        """The answer as streamed so far, for storing."""
        text = "".join(i.value for i in self._items if i.kind == "message")
        calls = tuple(
            ToolCall(i.call_id, i.name, i.value) for i in self._items if i.kind == "function_call"
        )
        message = Message("assistant", (TextPart(text),) if text else (), calls)
        reason = self._finish or ("tool_calls" if calls else "stop")
        return ChatResponse(
            id=self._upstream_id or self._info.id,
            model=self._upstream_model,
            choices=(Choice(0, message, reason),),
            usage=self._usage or Usage(),
            created=self._info.created_at,
        )

    # --- frames ----------------------------------------------------------------------

    def _prelude(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        info = dataclasses.replace(self._info, status="in_progress")
        snapshot = response_json(info, [], None)
        return self._emit("response.created", response=snapshot) + self._emit(
            "response.in_progress", response=snapshot
        )

    def _text(self, text: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.kind != "message":
            out += self._close_open()
            item = self._add("message")
            out += self._emit_item("response.output_item.added", item)
        item.chunks.append(text)
        return out + self._emit(
            "response.output_text.delta", **self._at(item), content_index=0, delta=text, logprobs=[]
        )

    def _arguments(self, event: ToolCallDelta) -> bytes:
        item = self._calls.get(event.index)
        if item is None or not event.arguments:  # a delta without its start has no call id
            return b""
        item.chunks.append(event.arguments)
        return self._emit(
            "response.function_call_arguments.delta", **self._at(item), delta=event.arguments
        )

    def _close_open(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        item.status = "incomplete" if self._finish in INCOMPLETE else "completed"
        at = self._at(item)
        if item.kind == "message":
            part = output_text_part(item.value)
            out = self._emit(
                "response.output_text.done", **at, content_index=0, text=item.value, logprobs=[]
            )
            out += self._emit("response.content_part.done", **at, content_index=0, part=part)
        else:
            out = self._emit("response.function_call_arguments.done", **at, arguments=item.value)
        return out + self._emit_item("response.output_item.done", item)

    def _add(self, kind: str, call_id: str = "", name: str = "") -> _Item:
        n = len(self._items)
        item_id = self.item_id if n == 0 else f"{self.item_id}_{n}"
        item = _Item(kind, item_id, n, call_id=call_id, name=name)
        self._items.append(item)
        self._open = item
        return item

    @staticmethod
    def _at(item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index}

    def _emit_item(self, kind: str, item: _Item) -> bytes:
        out = self._emit(kind, output_index=item.output_index, item=item.json())
        if kind == "response.output_item.added" and item.kind == "message":
            # A message item opens its one text part right away, as OpenAI's stream does.
            out += self._emit(
                "response.content_part.added",
                **self._at(item),
                content_index=0,
                part=output_text_part(""),
            )
        return out

    def _emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return encode_sse(orjson.dumps(payload), event=kind)

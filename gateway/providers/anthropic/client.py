"""The Anthropic Messages route (`POST /v1/messages`) as our clients see it.

This lets Anthropic SDK clients use the gateway, whatever upstream ends up answering.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.anthropic import translate
from gateway.providers.anthropic.parse import parse_messages_request
from gateway.providers.sse import encode_sse
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Finish,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)

ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "payload_too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "context_length_exceeded": "invalid_request_error",
    "content_filter": "invalid_request_error",
    "upstream_error": "api_error",
    "upstream_timeout": "timeout_error",
    "overloaded": "overloaded_error",
    "internal": "api_error",
}


class AnthropicMessagesCodec:
    def parse_request(self, body: object) -> ChatRequest:
        return parse_messages_request(body)

    def render_response(self, resp: ChatResponse, public_model: str) -> dict[str, Any]:
        return translate.chat_response_json(resp, public_model)

    def new_stream_encoder(
        self, req: ChatRequest, request_id: str, public_model: str
    ) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder(request_id, public_model)

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        return render_error(err)

    def passthrough(
        self, adapter: Any, req: ChatRequest, request_id: str, public_model: str
    ) -> None:
        return None  # Anthropic -> Anthropic streams go through translation for now


def render_error(err: GatewayError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(err.kind, "api_error"), "message": err.message},
    }


class AnthropicStreamEncoder:
    """Internal stream events -> Anthropic's SSE sequence.

    message_start, then for each content block content_block_start / _delta... / _stop, then
    message_delta (stop reason and usage) and message_stop. A block is closed when the events
    switch from text to a tool call or from one tool call to the next. Only choice 0 is
    rendered. Internally the usage may come after the Finish (OpenAI upstreams send it in a last
    chunk), so message_delta waits for the UsageReport, or for `finish()`.
    """

    content_type = "text/event-stream"

    def __init__(self, request_id: str, public_model: str) -> None:
        self._id = translate.message_id(request_id)
        self._model = public_model
        self._started = False
        self._next_block = 0
        self._open: tuple[str, int | None] | None = None  # ("text", None) or ("tool", index)
        self._closed_tools: set[int] = set()
        self._stop_reason: str | None = None
        self._usage: Usage | None = None
        self._delta_sent = False

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            return self._start()
        out = self._start()
        if isinstance(event, UsageReport):
            self._usage = event.usage
            if self._stop_reason is not None:
                out += self._message_delta()
            return out
        if getattr(event, "choice", 0) != 0 or self._delta_sent:
            return out
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if self._open != ("text", None):
                out += self._close_block() + self._open_block(("text", None), {"text": ""})
            delta = {"type": "text_delta", "text": event.text}
        elif isinstance(event, ToolCallStart):
            if event.index in self._closed_tools or self._open == ("tool", event.index):
                return out
            return out + self._open_tool(event.index, event.id, event.name)
        elif isinstance(event, ToolCallDelta):
            if not event.arguments or event.index in self._closed_tools:
                # Anthropic blocks cannot be reopened; no upstream interleaves tool calls.
                return out
            if self._open != ("tool", event.index):
                out += self._open_tool(event.index, f"toolu_{self._id}_{event.index}", "")
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
        elif isinstance(event, Finish):
            self._stop_reason = translate.FINISH_TO_STOP_REASON.get(event.reason, "end_turn")
            out += self._close_block()
            if self._usage is not None:
                out += self._message_delta()
            return out
        else:
            return out
        index = self._next_block - 1
        return out + self._frame(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def finish(self) -> bytes:
        out = self._start() + self._close_block()
        if not self._delta_sent:
            out += self._message_delta()
        return out + self._frame("message_stop", {"type": "message_stop"})

    def error(self, err: GatewayError) -> bytes:
        return encode_sse(orjson.dumps(render_error(err)), event="error")

    # --- frames ---------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The real input count is only known with the UsageReport; message_delta has it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return self._frame("message_start", {"type": "message_start", "message": message})

    def _open_tool(self, index: int, tool_id: str, name: str) -> bytes:
        out = self._close_block()
        block = {"id": tool_id, "name": name, "input": {}}
        return out + self._open_block(("tool", index), block)

    def _open_block(self, which: tuple[str, int | None], fields: dict[str, Any]) -> bytes:
        self._open = which
        index = self._next_block
        self._next_block += 1
        block = {"type": "text" if which[0] == "text" else "tool_use", **fields}
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        return self._frame("content_block_start", payload)

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        if self._open[0] == "tool":
            self._closed_tools.add(self._open[1])  # type: ignore[arg-type]
        self._open = None
        payload = {"type": "content_block_stop", "index": self._next_block - 1}
        return self._frame("content_block_stop", payload)

    def _message_delta(self) -> bytes:
        self._delta_sent = True
        usage = translate.usage_json(self._usage or Usage())
        if self._usage is None or self._usage.input_tokens is None:
            del usage["input_tokens"]  # don't overwrite what message_start said with a guess
        payload = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage.pop("output_tokens"), **usage},
        }
        return self._frame("message_delta", payload)

    def _frame(self, event: str, payload: dict[str, Any]) -> bytes:
        return encode_sse(orjson.dumps(payload), event=event)

"""The OpenAI Chat Completions route as our clients see it."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.openai import translate
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
    UsageReport,
)

ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "payload_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "context_length_exceeded": "invalid_request_error",
    "content_filter": "invalid_request_error",
    "upstream_error": "upstream_error",
    "upstream_timeout": "timeout_error",
    "overloaded": "service_unavailable_error",
    "internal": "server_error",
}


class OpenAIChatCodec:
    def parse_request(self, body: object) -> ChatRequest:
        return translate.parse_chat_request(body)

    def render_response(self, resp: ChatResponse, public_model: str) -> dict[str, Any]:
        return translate.chat_response_json(resp, public_model)

    def new_stream_encoder(
        self, req: ChatRequest, request_id: str, public_model: str
    ) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(request_id, public_model, req.include_usage)

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        return render_error(err)

    def passthrough(
        self, adapter: Any, req: ChatRequest, request_id: str, public_model: str
    ) -> Any:
        if adapter.wire != "openai":
            return None
        from gateway.providers.openai.passthrough import OpenAIPassthrough

        return OpenAIPassthrough(request_id, public_model, req.include_usage)


def render_error(err: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": ERROR_TYPES.get(err.kind, "server_error"),
            "param": err.param,
            "code": err.code or err.kind,
        }
    }


class OpenAIStreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, request_id: str, public_model: str, include_usage: bool) -> None:
        self._head = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": public_model,
        }
        self._include_usage = include_usage
        self._started = False

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._started = True
            return self._choice(0, {"role": "assistant", "content": ""})
        prefix = b"" if self._started else self.encode(StreamStart("", ""))
        if isinstance(event, TextDelta):
            return prefix + self._choice(event.choice, {"content": event.text})
        if isinstance(event, ToolCallStart):
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return prefix + self._choice(event.choice, {"tool_calls": [call]})
        if isinstance(event, ToolCallDelta):
            call = {"index": event.index, "function": {"arguments": event.arguments}}
            return prefix + self._choice(event.choice, {"tool_calls": [call]})
        if isinstance(event, Finish):
            return prefix + self._choice(event.choice, {}, event.reason)
        if isinstance(event, UsageReport) and self._include_usage:
            usage = translate.usage_json(event.usage)
            return prefix + self._frame({**self._head, "choices": [], "usage": usage})
        return prefix

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return encode_sse(orjson.dumps(render_error(err)))

    def _choice(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame({**self._head, "choices": [choice]})

    def _frame(self, payload: dict[str, Any]) -> bytes:
        return encode_sse(orjson.dumps(payload))

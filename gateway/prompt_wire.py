"""The prompt APIs' own wire format: answers, errors and SSE events (see prompt_calls.py)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.openai.client import render_error as openai_error
from gateway.schemas import ChatRequest, ChatResponse, StreamEvent, TextDelta
from gateway.usage import UsageRecord

SSE = b"text/event-stream"


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def usage_json(record: UsageRecord) -> dict[str, Any]:
    total = None
    if record.input_tokens is not None and record.output_tokens is not None:
        total = record.input_tokens + record.output_tokens
    return {
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "total_tokens": total,
        "cost_usd": f"{record.cost:f}" if record.cost is not None else None,
    }


def render_error(err: GatewayError) -> dict[str, Any]:
    """OpenAI's error shape, plus `errors` (one per invalid field) where there are some."""
    body = openai_error(err)
    errors = getattr(err, "errors", None)
    if errors:
        body["error"]["errors"] = errors
    return body


class PromptStreamEncoder:
    """Text deltas as `delta` events; the caller sends `done` once the output is checked."""

    content_type = SSE.decode()

    def __init__(self, step: str = "") -> None:
        self._step = step

    def encode(self, stream_event: StreamEvent) -> bytes:
        if isinstance(stream_event, TextDelta) and stream_event.choice == 0 and stream_event.text:
            data: dict[str, Any] = {"text": stream_event.text}
            if self._step:
                data["step"] = self._step
            return event("delta", data)
        return b""

    def finish(self) -> bytes:
        return b""

    def error(self, err: GatewayError) -> bytes:
        return event("error", render_error(err))


class PromptCodec:
    """The ClientCodec the pipeline renders a prompt step with; requests are built, not
    parsed, and a whole answer is taken from the pipeline's `after` hook."""

    def __init__(self, step: str = "") -> None:
        self._step = step

    def parse_request(self, body: object) -> ChatRequest:
        raise NotImplementedError("prompt steps are built from the prompt version")

    def render_response(self, resp: ChatResponse, public_model: str) -> dict:
        return {}

    def new_stream_encoder(
        self, req: ChatRequest, request_id: str, public_model: str
    ) -> PromptStreamEncoder:
        return PromptStreamEncoder(self._step)

    def render_error(self, err: GatewayError) -> dict:
        return render_error(err)

    def passthrough(self, adapter: Any, req: ChatRequest, request_id: str, public_model: str):
        return None

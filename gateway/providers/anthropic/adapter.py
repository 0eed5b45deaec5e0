"""Upstream adapter for Anthropic's Messages API (`POST /v1/messages`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.anthropic import translate
from gateway.providers.sse import SSEDecoder, SSEFrame
from gateway.providers.upstream_errors import error_from_status, load_json
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Credentials,
    EmbeddingRequest,
    EmbeddingResponse,
    Finish,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamRequest,
    UsageReport,
)

# Anthropic's in-stream and in-body error types, for errors that carry no useful HTTP status.
STREAM_ERRORS: dict[str, tuple[str, bool]] = {
    "overloaded_error": ("overloaded", True),
    "rate_limit_error": ("rate_limit", True),
    "api_error": ("upstream_error", True),
    "timeout_error": ("upstream_timeout", True),
    "invalid_request_error": ("invalid_request", False),
    "request_too_large": ("payload_too_large", False),
}


class AnthropicAdapter:
    wire = "anthropic"

    def headers(self, creds: Credentials) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": str(
                creds.options.get("anthropic_version") or translate.ANTHROPIC_VERSION
            ),
        }
        if creds.api_key:
            headers["x-api-key"] = creds.api_key
        return headers

    def chat_url(self, creds: Credentials) -> str:
        base = creds.base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + "/v1/messages"

    def build_chat_request(self, req: ChatRequest, creds: Credentials) -> UpstreamRequest:
        body = translate.chat_request_json(req, creds.upstream_model)
        url = self.chat_url(creds)
        return UpstreamRequest("POST", url, self.headers(creds), orjson.dumps(body))

    def parse_chat_response(self, body: bytes) -> ChatResponse:
        data = load_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise GatewayError("upstream_error", "The upstream answered with a malformed body.")
        return translate.parse_chat_response(data, created=int(time.time()))

    def new_stream_parser(self) -> AnthropicStreamParser:
        return AnthropicStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        data = load_json(body, strict=False)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        if status == 413 or kind == "request_too_large":
            return GatewayError("payload_too_large", message or "The request is too large.")
        code = None
        if isinstance(message, str) and "prompt is too long" in message.lower():
            code = "context_length_exceeded"
        return error_from_status(status, headers, message, code=code)

    def build_embedding_request(self, req: EmbeddingRequest, creds: Credentials) -> UpstreamRequest:
        raise _no_embeddings()

    def parse_embedding_response(self, body: bytes) -> EmbeddingResponse:
        raise _no_embeddings()


def _no_embeddings() -> GatewayError:
    return GatewayError("invalid_request", "Anthropic does not offer embeddings.", status=400)


def stream_error(error: object) -> GatewayError:
    """An `event: error` frame, e.g. `{"type": "overloaded_error", "message": "Overloaded"}`."""
    error = error if isinstance(error, dict) else {}
    kind, retryable = STREAM_ERRORS.get(str(error.get("type")), ("upstream_error", False))
    message = str(error.get("message") or "The upstream reported an error mid-stream.")
    return GatewayError(kind, message, retryable=retryable)  # type: ignore[arg-type]


class AnthropicStreamParser:
    """message_start, content_block_*, message_delta, message_stop frames -> stream events.

    Usage arrives in pieces (input at message_start, output at message_delta) and is reported
    once, combined, at message_stop.
    """

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._done = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._tool_args_seen: set[int] = set()  # tool call indexes that got arguments
        self._usage: dict[str, int | None] = {}

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        return self._frames(self._sse.feed(chunk))

    def close(self) -> list[StreamEvent]:
        events = self._frames(self._sse.close())
        if not self._done:
            raise GatewayError("upstream_error", "The upstream stream ended before message_stop.")
        return events

    def _frames(self, frames: list[SSEFrame]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in frames:
            if self._done or not frame.data.strip():
                continue
            data = load_json(frame.data.encode())
            if not isinstance(data, dict):
                raise GatewayError("upstream_error", "The upstream sent a malformed stream frame.")
            events.extend(self._event(data.get("type") or frame.event, data))
        return events

    def _event(self, kind: str | None, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "message_start":
            message = data.get("message") or {}
            self._take_usage(message.get("usage"))
            return [StreamStart(message.get("id") or "", message.get("model") or "")]
        if kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(data.get("index", 0), data.get("delta") or {})
        if kind == "content_block_stop":
            tool = self._tools.get(data.get("index", 0))
            if tool is not None and tool not in self._tool_args_seen:
                # A tool without parameters streams no JSON at all; say `{}` explicitly.
                self._tool_args_seen.add(tool)
                return [ToolCallDelta(tool, "{}")]
            return []
        if kind == "message_delta":
            self._take_usage(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            return [Finish(translate.finish_reason(reason))] if reason else []
        if kind == "message_stop":
            self._done = True
            u = self._usage
            usage = translate.combine_usage(
                u.get("input_tokens"),
                u.get("output_tokens"),
                u.get("cache_read_input_tokens"),
                u.get("cache_creation_input_tokens"),
            )
            return [UsageReport(usage)]
        if kind == "error":
            raise stream_error(data.get("error"))
        return []  # ping, and event types added after this was written

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        if block.get("type") == "text":
            return [TextDelta(block["text"])] if block.get("text") else []
        if block.get("type") == "tool_use":
            tool = len(self._tools)
            self._tools[index] = tool
            events: list[StreamEvent] = [
                ToolCallStart(tool, block.get("id") or "", block.get("name") or "")
            ]
            if block.get("input"):
                self._tool_args_seen.add(tool)
                events.append(ToolCallDelta(tool, orjson.dumps(block["input"]).decode()))
            return events
        return []  # thinking and server-tool blocks have no internal equivalent

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            tool = self._tools.get(index)
            if tool is None:
                return []
            self._tool_args_seen.add(tool)
            return [ToolCallDelta(tool, delta["partial_json"])]
        return []

    def _take_usage(self, raw: object) -> None:
        """Counts are cumulative: a later non-null value replaces an earlier one."""
        if not isinstance(raw, dict):
            return
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            if isinstance(raw.get(key), int):
                self._usage[key] = raw[key]

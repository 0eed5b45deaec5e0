"""Upstream adapter for the Gemini API (`generativelanguage.googleapis.com/v1beta`).

The key goes in the `x-goog-api-key` header, never in the URL (URLs end up in logs).
`Credentials.upstream_model` is a bare model id (`gemini-2.5-flash`) or a full resource name
(`models/...`, `tunedModels/...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.gemini import translate
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
    Usage,
    UsageReport,
)

# e.g. "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
_TOO_LONG = re.compile(
    r"exceeds the maximum number of tokens|input token count.*exceeds|token limit|"
    r"context (length|window)",
    re.IGNORECASE,
)


class GeminiAdapter:
    wire = "gemini"

    def headers(self, creds: Credentials) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if creds.api_key:
            headers["x-goog-api-key"] = creds.api_key
        return headers

    def resource(self, creds: Credentials) -> str:
        model = creds.upstream_model.strip("/")
        return model if "/" in model else f"models/{model}"

    def url(self, creds: Credentials, method: str) -> str:
        return f"{creds.base_url.rstrip('/')}/{self.resource(creds)}:{method}"

    def build_chat_request(self, req: ChatRequest, creds: Credentials) -> UpstreamRequest:
        body = translate.chat_request_json(req, creds.upstream_model)
        method = "streamGenerateContent?alt=sse" if req.stream else "generateContent"
        url = self.url(creds, method)
        return UpstreamRequest("POST", url, self.headers(creds), orjson.dumps(body))

    def parse_chat_response(self, body: bytes) -> ChatResponse:
        data = load_json(body)
        if not isinstance(data, dict):
            raise GatewayError("upstream_error", "The upstream answered with a malformed body.")
        if isinstance(data.get("error"), dict):
            raise gemini_error(data["error"].get("code") or 502, {}, data["error"])
        return translate.parse_chat_response(data)

    def new_stream_parser(self) -> GeminiStreamParser:
        return GeminiStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        data = load_json(body, strict=False)
        if isinstance(data, list) and data:  # streamGenerateContent without alt=sse: an array
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        return gemini_error(status, headers, error if isinstance(error, dict) else {})

    def build_embedding_request(self, req: EmbeddingRequest, creds: Credentials) -> UpstreamRequest:
        model = self.resource(creds)
        requests = []
        for text in req.inputs:
            item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if req.dimensions is not None:
                item["outputDimensionality"] = req.dimensions
            requests.append(item)
        url = self.url(creds, "batchEmbedContents")
        return UpstreamRequest(
            "POST", url, self.headers(creds), orjson.dumps({"requests": requests})
        )

    def parse_embedding_response(self, body: bytes) -> EmbeddingResponse:
        data = load_json(body)
        try:
            vectors = tuple(tuple(row["values"]) for row in data["embeddings"])
        except (KeyError, TypeError) as exc:
            raise GatewayError("upstream_error", "The upstream sent malformed embeddings.") from exc
        # Gemini reports no token counts for embeddings.
        return EmbeddingResponse(model="", vectors=vectors, usage=Usage())


def gemini_error(status: int, headers: Mapping[str, str], error: dict[str, Any]) -> GatewayError:
    """`{"error": {"code", "message", "status", "details"}}` -> GatewayError."""
    message = error.get("message") if isinstance(error.get("message"), str) else None
    state = error.get("status")
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    if any(d.get("reason") == "API_KEY_INVALID" for d in details) or state == "UNAUTHENTICATED":
        return error_from_status(401, headers, message)  # our key, not the client's request: 502
    if state == "FAILED_PRECONDITION":  # e.g. billing or region of our Google project
        return GatewayError("upstream_error", f"The upstream refused the request: {message}")
    too_long = status == 400 and message is not None and _TOO_LONG.search(message) is not None
    code = "context_length_exceeded" if too_long else None
    err = error_from_status(status, headers, message, code=code)
    if err.retryable and err.retry_after is None:
        err.retry_after = _retry_delay(details)
    return err


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """google.rpc.RetryInfo carries the delay as a Duration string such as "12.5s"."""
    for d in details:
        delay = d.get("retryDelay")
        if str(d.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str):
            try:
                return max(0.0, float(delay.removesuffix("s")))
            except ValueError:
                return None
    return None


class GeminiStreamParser:
    """`streamGenerateContent?alt=sse`: each SSE frame holds one GenerateContentResponse.

    Gemini sends each functionCall part whole, so it becomes a ToolCallStart and a single
    ToolCallDelta. There is no end marker: the stream counts as complete once a candidate has
    reported a finishReason. Every frame repeats the running usage; the last one is reported
    once, at close().
    """

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}  # choice -> tool calls seen
        self._usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        return self._frames(self._sse.feed(chunk))

    def close(self) -> list[StreamEvent]:
        events = self._frames(self._sse.close())
        if not self._finished:
            raise GatewayError("upstream_error", "The Gemini stream ended before it was complete.")
        if self._usage is not None:
            events.append(UsageReport(self._usage))
        return events

    def _frames(self, frames: list[SSEFrame]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in frames:
            if not frame.data.strip():
                continue
            data = load_json(frame.data.encode())
            if not isinstance(data, dict):
                raise GatewayError("upstream_error", "The upstream sent a malformed stream frame.")
            if isinstance(data.get("error"), dict):
                raise gemini_error(data["error"].get("code") or 502, {}, data["error"])
            events.extend(self._response(data))
        return events

    def _response(self, data: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            response_id = data.get("responseId") or translate.new_response_id()
            events.append(StreamStart(response_id, data.get("modelVersion") or ""))
        candidates = [c for c in data.get("candidates") or [] if isinstance(c, dict)]
        feedback = data.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            raise translate.missing_candidates(data)
        for position, cand in enumerate(candidates):
            choice = translate.candidate_index(cand, position)
            for part in translate.parts_of(cand):
                if text := translate.part_text(part):
                    events.append(TextDelta(text, choice))
                elif isinstance(part.get("functionCall"), dict):
                    n = self._calls.get(choice, 0)
                    self._calls[choice] = n + 1
                    call = translate.tool_call(part["functionCall"], choice, n)
                    events.append(ToolCallStart(n, call.id, call.name, choice))
                    events.append(ToolCallDelta(n, call.arguments, choice))
            reason = cand.get("finishReason")
            if reason and choice not in self._finished:
                self._finished.add(choice)
                finish = translate.finish_reason(reason, choice in self._calls) or "stop"
                events.append(Finish(finish, choice))
        if isinstance(data.get("usageMetadata"), dict):
            self._usage = translate.parse_usage(data["usageMetadata"])
        return events

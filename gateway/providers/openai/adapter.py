"""Upstream adapter for OpenAI and every OpenAI-compatible server (vLLM, Ollama, Groq, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.openai import translate
from gateway.providers.sse import SSEDecoder
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


class OpenAIAdapter:
    wire = "openai"

    def headers(self, creds: Credentials) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if creds.api_key:
            headers["authorization"] = f"Bearer {creds.api_key}"
        return headers

    def chat_url(self, creds: Credentials) -> str:
        return creds.base_url.rstrip("/") + "/chat/completions"

    def embeddings_url(self, creds: Credentials) -> str:
        return creds.base_url.rstrip("/") + "/embeddings"

    def upstream_model(self, creds: Credentials) -> str | None:
        return creds.upstream_model

    def build_chat_request(self, req: ChatRequest, creds: Credentials) -> UpstreamRequest:
        body = translate.chat_request_json(req, self.upstream_model(creds))
        return UpstreamRequest(
            "POST", self.chat_url(creds), self.headers(creds), orjson.dumps(body)
        )

    def parse_chat_response(self, body: bytes) -> ChatResponse:
        data = load_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise GatewayError("upstream_error", "The upstream answered with a malformed body.")
        return translate.parse_chat_response(data)

    def new_stream_parser(self) -> OpenAIStreamParser:
        return OpenAIStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        data = load_json(body, strict=False)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return error_from_status(status, headers, message, code=code)

    def build_embedding_request(self, req: EmbeddingRequest, creds: Credentials) -> UpstreamRequest:
        body: dict[str, Any] = dict(req.extra)
        body.pop("encoding_format", None)  # we always want floats; the codec re-encodes
        body["input"] = list(req.inputs)
        if (model := self.upstream_model(creds)) is not None:
            body["model"] = model
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        if req.user is not None:
            body["user"] = req.user
        url = self.embeddings_url(creds)
        return UpstreamRequest("POST", url, self.headers(creds), orjson.dumps(body))

    def parse_embedding_response(self, body: bytes) -> EmbeddingResponse:
        data = load_json(body)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = tuple(tuple(row["embedding"]) for row in rows)
        except (KeyError, TypeError) as exc:
            raise GatewayError("upstream_error", "The upstream sent malformed embeddings.") from exc
        usage = data.get("usage") or {}
        return EmbeddingResponse(
            model=data.get("model", ""),
            vectors=vectors,
            usage=Usage(input_tokens=usage.get("prompt_tokens"), output_tokens=0),
        )


class OpenAIStreamParser:
    """chat.completion.chunk frames -> stream events."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._done = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        return self._frames(self._sse.feed(chunk))

    def close(self) -> list[StreamEvent]:
        events = self._frames(self._sse.close())
        if not self._done:
            raise GatewayError(
                "upstream_error", "The upstream stream ended before it was complete."
            )
        return events

    def _frames(self, frames: list) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in frames:
            if self._done:
                continue
            if frame.data.strip() == "[DONE]":
                self._done = True
                continue
            data = load_json(frame.data.encode())
            if not isinstance(data, dict):
                raise GatewayError("upstream_error", "The upstream sent a malformed stream frame.")
            if isinstance(data.get("error"), dict):
                err = data["error"]
                raise GatewayError("upstream_error", str(err.get("message") or "Upstream error."))
            events.extend(self._chunk(data))
        return events

    def _chunk(self, data: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(data.get("id") or "", data.get("model") or ""))
        for choice in data.get("choices") or []:
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events.append(TextDelta(delta["content"], index))
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                if call.get("id"):
                    events.append(
                        ToolCallStart(call.get("index", 0), call["id"], fn.get("name", ""), index)
                    )
                if fn.get("arguments"):
                    events.append(ToolCallDelta(call.get("index", 0), fn["arguments"], index))
            if choice.get("finish_reason"):
                events.append(Finish(translate.normalise_finish(choice["finish_reason"]), index))
        if data.get("usage"):
            events.append(UsageReport(translate.parse_usage(data["usage"])))
        return events

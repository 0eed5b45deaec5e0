"""A fake Gemini API (generativelanguage.googleapis.com, v1beta and v1).

POST /v1beta/models/{model}:generateContent | :streamGenerateContent | :embedContent |
:batchEmbedContents, with the key in an `x-goog-api-key` header or a `key` query parameter.

Wire details reproduced here:
  * `?alt=sse` streams SSE `data:` frames with CRLF line ends and no end marker; without it
    the stream endpoint answers one JSON array of the same chunks, as Google's does;
  * every streamed chunk carries `usageMetadata`, cumulative, so the last one is the total;
    `finishReason` rides on the last chunk;
  * tool calls are whole `functionCall` parts with `args` as an object (Gemini never splits
    a call's arguments across chunks, so neither does this fake); ToolCallSpec.id is unused;
  * errors are `{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}`; a
    wrong key is Google's 400 API_KEY_INVALID, a missing key its 403 PERMISSION_DENIED.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes import text
from tests.fakes.control import Reply
from tests.fakes.server import Call, FakeServer, Frame, Handler, JsonReply, SSEReply, frame

DEFAULT_KEY = "fake-gemini-key"
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072}
DEFAULT_DIMENSIONS = 768

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_CODES = {name: code for code, name in STATUS_NAMES.items()}


def error_payload(status: int, message: str, status_name: str | None = None) -> dict[str, Any]:
    name = status_name or STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": name}}


# --- request reading ----------------------------------------------------------------------


def parts_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [p["text"] for p in parts or [] if isinstance(p, dict) and "text" in p]
    return " ".join(texts)


def input_tokens(body: dict[str, Any]) -> int:
    system = body.get("systemInstruction") or body.get("system_instruction")
    return text.count_words([parts_text(system), *(parts_text(c) for c in body["contents"])])


def default_reply(contents: list[Any]) -> Reply:
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return text.echo(parts_text(content))
    return text.echo("")


# --- response building --------------------------------------------------------------------


def _usage(prompt: int, output: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def _response(
    parts: list[dict[str, Any]],
    finish: str | None,
    usage: dict[str, Any] | None,
    model: str,
    ident: str,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    payload: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        payload["usageMetadata"] = usage
    payload["modelVersion"] = model
    payload["responseId"] = ident
    return payload


def _call_part(name: str, arguments: str) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": orjson.loads(arguments or "{}")}}


def chunks(
    body: dict[str, Any], reply: Reply, model: str, ident: str, stream: bool, omit_usage: bool
) -> list[dict[str, Any]]:
    """The response as stream chunks (one per word or tool call), or as one response."""
    prompt = reply.input_tokens if reply.input_tokens is not None else input_tokens(body)
    total = text.output_tokens(reply)
    steps: list[tuple[dict[str, Any], int]] = []  # (part, words so far)
    pieces = text.text_pieces(reply.text) if stream else ([reply.text] if reply.text else [])
    said = ""
    for piece in pieces:
        said += piece
        steps.append(({"text": piece}, text.count_words([said])))
    for call in reply.tool_calls:
        so_far = (steps[-1][1] if steps else 0) + text.count_words([call.arguments])
        steps.append((_call_part(call.name, call.arguments), so_far))
    if not steps:
        steps.append(({"text": ""}, 0))
    finish = reply.finish_reason or "STOP"
    if not stream:
        usage = None if omit_usage else _usage(prompt, total)
        return [_response([part for part, _ in steps], finish, usage, model, ident)]
    out = []
    for i, (part, so_far) in enumerate(steps):
        last = i == len(steps) - 1
        usage = None if omit_usage else _usage(prompt, total if last else min(so_far, total))
        out.append(_response([part], finish if last else None, usage, model, ident))
    return out


# --- the server ---------------------------------------------------------------------------


class GeminiFake(FakeServer):
    """`base_url` is the API root, like https://generativelanguage.googleapis.com."""

    name = "gemini"

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        super().__init__(api_key)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1beta/models/{target}", self._dispatch),
            ("POST", "/v1/models/{target}", self._dispatch),
        ]

    def authenticate(self, call: Call) -> JsonReply | None:
        key = call.request.headers.get("x-goog-api-key") or call.request.query.get("key")
        if not key:
            return self.error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.api_key:
            reply = self.error(400, "API key not valid. Please pass a valid API key.")
            reply.payload["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
            return reply
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> JsonReply:
        return JsonReply(status, error_payload(status, message, error_type))

    def stream_error(self, message: str, error_type: str | None = None) -> Frame:
        name = error_type or "INTERNAL"
        return frame(error_payload(_CODES.get(name, 500), message, name))

    async def _dispatch(self, call: Call) -> JsonReply | SSEReply:
        model, _, action = call.request.match_info["target"].rpartition(":")
        handlers = {
            "generateContent": self._generate,
            "streamGenerateContent": self._generate,
            "embedContent": self._embed,
            "batchEmbedContents": self._batch_embed,
        }
        if not model or action not in handlers:
            return self.error(404, f"Method not found: {call.request.path}")
        if not isinstance(call.body, dict):
            return self.error(400, "Invalid JSON payload received.")
        return await handlers[action](call, model, action == "streamGenerateContent")

    async def _generate(self, call: Call, model: str, stream: bool) -> JsonReply | SSEReply:
        body = call.body
        if not isinstance(body.get("contents"), list) or not body["contents"]:
            return self.error(400, "* GenerateContentRequest.contents: contents is not specified")
        reply = call.reply(lambda: default_reply(body["contents"]))
        ident = f"fake-response-{self.next_id()}"
        payloads = chunks(body, reply, model, ident, stream, call.fault.omit_usage)
        if not stream:
            return JsonReply(200, payloads[0])
        if call.request.query.get("alt") != "sse":
            return JsonReply(200, payloads)  # Google streams a JSON array without alt=sse
        return SSEReply([frame(p) for p in payloads], "text/event-stream", line_end="\r\n")

    def _vector(self, request: dict[str, Any], model: str) -> dict[str, Any]:
        size = request.get("outputDimensionality")
        size = int(size or EMBEDDING_DIMENSIONS.get(model, DEFAULT_DIMENSIONS))
        return {"values": text.embedding(parts_text(request.get("content")), size)}

    async def _embed(self, call: Call, model: str, _: bool) -> JsonReply:
        if not isinstance(call.body.get("content"), dict):
            return self.error(400, "* EmbedContentRequest.content: content is not specified")
        return JsonReply(200, {"embedding": self._vector(call.body, model)})

    async def _batch_embed(self, call: Call, model: str, _: bool) -> JsonReply:
        requests = call.body.get("requests")
        if not isinstance(requests, list) or not requests:
            return self.error(400, "* BatchEmbedContentsRequest.requests: requests is required")
        if not all(isinstance(r, dict) and isinstance(r.get("content"), dict) for r in requests):
            return self.error(400, "* EmbedContentRequest.content: content is not specified")
        return JsonReply(200, {"embeddings": [self._vector(r, model) for r in requests]})


def start(api_key: str = DEFAULT_KEY) -> GeminiFake:
    """Start a fake Gemini API on a free loopback port; `stop()` it when done."""
    return GeminiFake(api_key).start()

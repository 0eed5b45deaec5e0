"""A fake Anthropic Messages API: POST /v1/messages (plain and streamed) and count_tokens.

Streams follow api.anthropic.com event for event, each with an `event:` line naming the
type that its JSON repeats:
  message_start (usage.input_tokens, output_tokens 1) -> content_block_start -> ping ->
  content_block_delta (text_delta | input_json_delta, the first of which is empty) ... ->
  content_block_stop -> ... -> message_delta (stop_reason, cumulative usage.output_tokens)
  -> message_stop.
Errors are `{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`,
and an error inside a stream is an `event: error` frame with that same JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes import text
from tests.fakes.control import Reply
from tests.fakes.server import Call, FakeServer, Frame, Handler, JsonReply, SSEReply, frame

DEFAULT_KEY = "sk-ant-fake"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


# --- request reading ----------------------------------------------------------------------


def block_text(content: Any) -> str:
    """The text of a content value: a string, or its text blocks and tool results' text."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(block_text(block.get("content")))
    return " ".join(parts)


def input_tokens(body: dict[str, Any]) -> int:
    texts = [block_text(body.get("system"))]
    texts += [block_text(m.get("content")) for m in body["messages"] if isinstance(m, dict)]
    return text.count_words(texts)


def default_reply(messages: list[Any]) -> Reply:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text.echo(block_text(message.get("content")))
    return text.echo("")


def request_problem(body: Any, need_max_tokens: bool = True) -> str | None:
    if not isinstance(body, dict):
        return "There was an error parsing the body of your request."
    for name in ("model", "messages") + (("max_tokens",) if need_max_tokens else ()):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "messages: at least one message is required"
    return None


# --- response building --------------------------------------------------------------------


def _stop_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _tool_id(reply: Reply, index: int) -> str:
    return reply.tool_calls[index].id or f"toolu_fake_{index}"


def _usage(body: dict[str, Any], reply: Reply, output: int | None = None) -> dict[str, Any]:
    prompt = reply.input_tokens if reply.input_tokens is not None else input_tokens(body)
    return {
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": text.output_tokens(reply) if output is None else output,
        "service_tier": "standard",
    }


def message(body: dict[str, Any], reply: Reply, ident: str, omit_usage: bool) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        content.append({"type": "text", "text": reply.text})
    for i, call in enumerate(reply.tool_calls):
        tool_input = orjson.loads(call.arguments or "{}")
        content.append(
            {"type": "tool_use", "id": _tool_id(reply, i), "name": call.name, "input": tool_input}
        )
    payload: dict[str, Any] = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
    }
    if not omit_usage:
        payload["usage"] = _usage(body, reply)
    return payload


def _event(payload: dict[str, Any]) -> Frame:
    return frame(payload, payload["type"])


def _block_frames(reply: Reply) -> list[list[Frame]]:
    """Each content block's start, deltas and stop."""
    blocks: list[list[Frame]] = []
    if reply.text or not reply.tool_calls:
        index = len(blocks)
        frames = [
            _event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
        ]
        for piece in text.text_pieces(reply.text):
            delta = {"type": "text_delta", "text": piece}
            frames.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
        blocks.append(frames)
    for i, call in enumerate(reply.tool_calls):
        index = len(blocks)
        start = {"type": "tool_use", "id": _tool_id(reply, i), "name": call.name, "input": {}}
        frames = [_event({"type": "content_block_start", "index": index, "content_block": start})]
        # The API opens every tool block with an empty partial_json; keep that quirk.
        for piece in ["", *text.json_pieces(call.arguments)]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            frames.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
        blocks.append(frames)
    for index, frames in enumerate(blocks):
        frames.append(_event({"type": "content_block_stop", "index": index}))
    return blocks


def event_frames(body: dict[str, Any], reply: Reply, ident: str, omit_usage: bool) -> list[Frame]:
    start: dict[str, Any] = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if not omit_usage:
        start["usage"] = _usage(body, reply, output=min(1, text.output_tokens(reply)))
    frames = [_event({"type": "message_start", "message": start})]
    blocks = _block_frames(reply)
    frames.append(blocks[0][0])
    frames.append(_event({"type": "ping"}))  # upstream pings right after the first block opens
    frames += blocks[0][1:]
    for block in blocks[1:]:
        frames += block
    end: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
    }
    if not omit_usage:
        end["usage"] = {"output_tokens": text.output_tokens(reply)}
    frames.append(_event(end))
    frames.append(_event({"type": "message_stop"}))
    return frames


# --- the server ---------------------------------------------------------------------------


class AnthropicFake(FakeServer):
    """`base_url` is the API root, like https://api.anthropic.com (clients add /v1/...)."""

    name = "anthropic"

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        super().__init__(api_key)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/messages", self._messages),
            ("POST", "/v1/messages/count_tokens", self._count_tokens),
        ]

    def authenticate(self, call: Call) -> JsonReply | None:
        headers = call.request.headers
        # x-api-key is the documented header; the official SDK (2.x) sends the same key as
        # a bearer token instead, so both are accepted. Tests assert which one was used.
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        key = headers.get("x-api-key") or bearer
        if not key:
            return self.error(401, "x-api-key header is required")
        if key != self.api_key:
            return self.error(401, "invalid x-api-key")
        if "anthropic-version" not in headers:
            return self.error(400, "anthropic-version: header is required")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> JsonReply:
        request_id = f"req_fake{self.next_id()}"
        error = {"type": error_type or error_type_for(status), "message": message}
        payload = {"type": "error", "error": error, "request_id": request_id}
        return JsonReply(status, payload, {"request-id": request_id})

    def stream_error(self, message: str, error_type: str | None = None) -> Frame:
        error = {"type": error_type or "overloaded_error", "message": message}
        return frame({"type": "error", "error": error}, "error")

    async def _messages(self, call: Call) -> JsonReply | SSEReply:
        problem = request_problem(call.body)
        if problem:
            return self.error(400, problem)
        body = call.body
        reply = call.reply(lambda: default_reply(body["messages"]))
        ident = f"msg_fake{self.next_id()}"
        headers = {"request-id": f"req_fake{self.next_id()}"}
        if body.get("stream"):
            frames = event_frames(body, reply, ident, call.fault.omit_usage)
            return SSEReply(frames, headers=headers)
        return JsonReply(200, message(body, reply, ident, call.fault.omit_usage), headers)

    async def _count_tokens(self, call: Call) -> JsonReply:
        problem = request_problem(call.body, need_max_tokens=False)
        if problem:
            return self.error(400, problem)
        return JsonReply(200, {"input_tokens": input_tokens(call.body)})


def start(api_key: str = DEFAULT_KEY) -> AnthropicFake:
    """Start a fake Anthropic API on a free loopback port; `stop()` it when done."""
    return AnthropicFake(api_key).start()

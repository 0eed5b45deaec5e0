"""Anthropic Messages JSON <-> the internal model.

Used by the upstream adapter (internal request -> Anthropic JSON, Anthropic response -> internal)
and by the client codec (internal response -> Anthropic JSON). The client's request validation
lives in `parse.py`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError, invalid
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI-style clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096
# Fields of `ChatRequest.extra` that mean the same thing to Anthropic (the Anthropic client codec
# puts them there). Everything else in `extra` is OpenAI-flavoured and Anthropic would reject it.
PASSTHROUGH_EXTRA = ("top_k",)

STOP_REASONS: dict[str, Any] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}

# --- request: internal -> JSON ----------------------------------------------------


def chat_request_json(req: ChatRequest, upstream_model: str) -> dict[str, Any]:
    if req.n != 1:
        raise invalid("Anthropic models can only generate one choice; 'n' must be 1.", "n")
    out: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
    }
    system = system_prompt(req)
    if system:
        out["system"] = system
    out["messages"] = messages_json(req.messages)
    if req.stream:
        out["stream"] = True
    if req.temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1: clamp rather than reject.
        out["temperature"] = min(max(float(req.temperature), 0.0), 1.0)
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.stop:
        out["stop_sequences"] = list(req.stop)
    if req.user:
        out["metadata"] = {"user_id": req.user}
    if req.tools:
        out["tools"] = [tool_json(t) for t in req.tools]
        if req.tool_choice is not None:
            out["tool_choice"] = tool_choice_json(req.tool_choice)
    for key in PASSTHROUGH_EXTRA:
        if req.extra.get(key) is not None:
            out[key] = req.extra[key]
    return out


def system_prompt(req: ChatRequest) -> str:
    """All system messages, wherever they stand, joined: Anthropic takes one top-level prompt."""
    texts = []
    for m in req.messages:
        if m.role != "system":
            continue
        if any(isinstance(p, ImagePart) for p in m.content):
            raise invalid("Anthropic system prompts can only contain text.", "messages")
        if m.text:
            texts.append(m.text)
    if req.response_format is not None:
        texts.append(response_format_instruction(req.response_format))
    return "\n\n".join(t for t in texts if t)


def response_format_instruction(fmt: ResponseFormat) -> str:
    """JSON mode as a system-prompt instruction.

    The Messages API (version 2023-06-01) has no `response_format`; Anthropic's structured
    outputs are a beta that only some models accept, so a routed request cannot rely on it.
    An explicit instruction works on every Claude model; it is a best effort, not a guarantee.
    """
    if fmt.type == "json_object":
        return (
            "Respond with a single valid JSON object and nothing else: "
            "no prose, no Markdown code fences."
        )
    if fmt.type == "json_schema":
        schema = orjson.dumps(fmt.schema or {}, option=orjson.OPT_SORT_KEYS).decode()
        return (
            f"Respond with a single valid JSON value (named '{fmt.name or 'response'}') that "
            f"conforms to this JSON Schema, and nothing else: no prose, no Markdown code fences.\n"
            f"{schema}"
        )
    return ""


def messages_json(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Non-system messages as strictly alternating user/assistant turns.

    Tool results become `tool_result` blocks in a user turn; consecutive turns of one role are
    merged, and in a merged user turn the tool results come first, as Anthropic requires.
    """
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _message_blocks(m)
        if not blocks:
            continue  # Anthropic rejects empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable
    return turns


def _message_blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [_tool_result_json(m)]
    blocks = [b for b in (content_block_json(p) for p in m.content) if b is not None]
    if m.role == "assistant":
        blocks.extend(tool_use_json(tc) for tc in m.tool_calls)
    return blocks


def _tool_result_json(m: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or ""}
    if all(isinstance(p, TextPart) for p in m.content):
        block["content"] = m.text
    else:
        block["content"] = [b for b in (content_block_json(p) for p in m.content) if b]
    if m.is_error:
        block["is_error"] = True
    return block


def content_block_json(p: ContentPart) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        # Anthropic rejects empty text blocks.
        return {"type": "text", "text": p.text} if p.text else None
    if p.url:
        return {"type": "image", "source": {"type": "url", "url": p.url}}
    source = {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data or ""}
    return {"type": "image", "source": source}


def tool_use_json(tc: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": tc.id, "name": tc.name, "input": arguments_object(tc)}


def arguments_object(tc: ToolCall) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic requires for `input`.

    A model may have produced broken arguments (e.g. cut off by max_tokens) that the client
    now sends back as history. Rejecting the request would make the conversation impossible to
    continue, so anything that is not a JSON object becomes `{}`.
    """
    try:
        value = orjson.loads(tc.arguments) if tc.arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_json(t: Tool) -> dict[str, Any]:
    schema = dict(t.parameters or {})
    schema.setdefault("type", "object")
    out: dict[str, Any] = {"name": t.name}
    if t.description:
        out["description"] = t.description
    out["input_schema"] = schema
    return out


def tool_choice_json(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == "none":
        return {"type": "none"}
    out: dict[str, Any] = {"type": {"required": "any"}.get(choice.mode, choice.mode)}
    if choice.mode == "tool":
        out["name"] = choice.name
    if choice.parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


# --- response: JSON -> internal ---------------------------------------------------


def parse_chat_response(data: dict[str, Any], created: int = 0) -> ChatResponse:
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for block in data.get("content") or []:
        if not isinstance(block, dict):
            raise GatewayError("upstream_error", "The upstream sent a malformed content block.")
        if block.get("type") == "text" and block.get("text"):
            parts.append(TextPart(block["text"]))
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(block.get("id") or "", block.get("name") or "", arguments))
        # thinking, redacted_thinking and server-tool blocks have no internal equivalent.
    message = Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls))
    choice = Choice(0, message, finish_reason(data.get("stop_reason")))
    return ChatResponse(
        id=data.get("id") or "",
        model=data.get("model") or "",
        choices=(choice,),
        usage=parse_usage(data.get("usage")),
        created=created,
    )


def finish_reason(stop_reason: str | None) -> Any:
    if stop_reason is None:
        return None
    return STOP_REASONS.get(stop_reason, "stop")


def parse_usage(raw: dict[str, Any] | None) -> Usage:
    """Anthropic's `input_tokens` leaves out cache reads and writes; ours is the whole prompt."""
    if not raw:
        return Usage()
    return combine_usage(
        raw.get("input_tokens"),
        raw.get("output_tokens"),
        raw.get("cache_read_input_tokens"),
        raw.get("cache_creation_input_tokens"),
    )


def combine_usage(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_creation: int | None,
) -> Usage:
    total = None
    if input_tokens is not None:
        total = input_tokens + (cache_read or 0) + (cache_creation or 0)
    return Usage(input_tokens=total, output_tokens=output_tokens, cached_input_tokens=cache_read)


# --- response: internal -> JSON (the client side) ----------------------------------


def message_id(raw_id: str) -> str:
    return raw_id if raw_id.startswith("msg_") else f"msg_{raw_id}"


def usage_json(usage: Usage) -> dict[str, Any]:
    """Back to Anthropic's split: `input_tokens` excludes the cached part."""
    cached = usage.cached_input_tokens or 0
    return {
        "input_tokens": max((usage.input_tokens or 0) - cached, 0),
        "output_tokens": usage.output_tokens or 0,
        "cache_read_input_tokens": cached,
    }


def chat_response_json(resp: ChatResponse, public_model: str) -> dict[str, Any]:
    """Only choice 0: the Messages API has no `n`."""
    content: list[dict[str, Any]] = []
    reason = None
    if resp.choices:
        choice = min(resp.choices, key=lambda c: c.index)
        content = [b for b in (content_block_json(p) for p in choice.message.content) if b]
        content.extend(tool_use_json(tc) for tc in choice.message.tool_calls)
        reason = choice.finish_reason
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": content,
        "stop_reason": FINISH_TO_STOP_REASON.get(reason or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_json(resp.usage),
    }

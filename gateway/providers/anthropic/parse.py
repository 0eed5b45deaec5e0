"""A client's Anthropic Messages request -> ChatRequest, validated field by field.

Errors name the offending field the way Anthropic's own do (`messages[1].content[0].text`).
Fields we do not model (`thinking`, `service_tier`, `container`, ...) are dropped rather than
forwarded: `ChatRequest.extra` goes verbatim to OpenAI-compatible upstreams, which would choke on
them. `top_k` is the exception, since several of those upstreams (vLLM, Ollama) understand it.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import invalid
from gateway.providers.validate import (
    expect_bool,
    expect_dict,
    expect_int,
    expect_list,
    expect_number,
    expect_str,
)
from gateway.schemas import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

ROLES = ("user", "assistant")
TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")
# Assistant blocks a client echoes back that we cannot pass on; they are dropped.
IGNORED_BLOCKS = ("thinking", "redacted_thinking")


def parse_messages_request(body: object) -> ChatRequest:
    body = expect_dict(body, "body")
    model = expect_str(body.get("model"), "model", required=True)
    if not model:
        raise invalid("'model' must not be empty.", "model")
    if body.get("max_tokens") is None:
        raise invalid("'max_tokens' is required.", "max_tokens")
    max_tokens = expect_int(body.get("max_tokens"), "max_tokens", minimum=1)
    raw_messages = expect_list(body.get("messages"), "messages", required=True)
    if not raw_messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    messages: list[Message] = _parse_system(body.get("system"))
    for i, raw in enumerate(raw_messages):
        messages.extend(_parse_message(raw, f"messages[{i}]"))
    stop = expect_list(body.get("stop_sequences"), "stop_sequences") or []
    metadata = expect_dict(body.get("metadata"), "metadata", required=False) or {}
    extra: dict[str, Any] = {}
    top_k = expect_int(body.get("top_k"), "top_k", minimum=0)
    if top_k is not None:
        extra["top_k"] = top_k
    tools = expect_list(body.get("tools"), "tools") or []
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=bool(expect_bool(body.get("stream"), "stream")),
        max_tokens=max_tokens,
        temperature=expect_number(body.get("temperature"), "temperature", 0, 1),
        top_p=expect_number(body.get("top_p"), "top_p", 0, 1),
        stop=tuple(
            expect_str(s, f"stop_sequences[{i}]", required=True) for i, s in enumerate(stop)
        ),
        user=expect_str(metadata.get("user_id"), "metadata.user_id"),
        tools=tuple(_parse_tool(t, f"tools[{i}]") for i, t in enumerate(tools)),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        extra=extra,
    )


def _parse_system(raw: object) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message(role="system", content=(TextPart(raw),))] if raw else []
    if not isinstance(raw, list):
        raise invalid("'system' must be a string or an array of text blocks.", "system")
    messages = []
    for i, block in enumerate(raw):
        block = expect_dict(block, f"system[{i}]")
        if block.get("type") != "text":
            raise invalid(f"'system[{i}].type' must be 'text'.", f"system[{i}].type")
        text = expect_str(block.get("text"), f"system[{i}].text", required=True)
        if text:
            messages.append(Message(role="system", content=(TextPart(text),)))
    return messages


def _parse_message(raw: object, where: str) -> list[Message]:
    """One Anthropic turn -> one or more internal messages.

    A user turn's `tool_result` blocks become `tool` messages, placed before the rest of the
    turn's content (which is where Anthropic requires them to be anyway).
    """
    msg = expect_dict(raw, where)
    role = msg.get("role")
    if role not in ROLES:
        raise invalid(f"'{where}.role' must be one of {', '.join(ROLES)}.", f"{where}.role")
    content = msg.get("content")
    if isinstance(content, str):
        return [Message(role=role, content=(TextPart(content),))]
    if content is None:
        raise invalid(f"'{where}.content' is required.", f"{where}.content")
    if not isinstance(content, list):
        raise invalid(
            f"'{where}.content' must be a string or an array of content blocks.",
            f"{where}.content",
        )
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        block = expect_dict(block, at)
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(expect_str(block.get("text"), f"{at}.text", required=True)))
        elif kind == "image":
            if role != "user":
                raise invalid(f"'{at}': image blocks belong in user messages.", at)
            parts.append(_parse_image(block.get("source"), f"{at}.source"))
        elif kind == "tool_use":
            if role != "assistant":
                raise invalid(f"'{at}': tool_use blocks belong in assistant messages.", at)
            calls.append(_parse_tool_use(block, at))
        elif kind == "tool_result":
            if role != "user":
                raise invalid(f"'{at}': tool_result blocks belong in user messages.", at)
            results.append(_parse_tool_result(block, at))
        elif kind in IGNORED_BLOCKS and role == "assistant":
            continue
        else:
            raise invalid(f"'{at}.type' {kind!r} is not supported.", f"{at}.type")
    if role == "assistant":
        return [Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls))]
    if parts or not results:
        results.append(Message(role="user", content=tuple(parts)))
    return results


def _parse_image(raw: object, where: str) -> ImagePart:
    source = expect_dict(raw, where)
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(
            data=expect_str(source.get("data"), f"{where}.data", required=True),
            media_type=expect_str(source.get("media_type"), f"{where}.media_type", required=True),
        )
    if kind == "url":
        url = expect_str(source.get("url"), f"{where}.url", required=True)
        if not url.startswith(("http://", "https://")):
            raise invalid(f"'{where}.url' must be an http(s) URL.", f"{where}.url")
        return ImagePart(url=url)
    raise invalid(f"'{where}.type' must be 'base64' or 'url'.", f"{where}.type")


def _parse_tool_use(block: dict[str, Any], where: str) -> ToolCall:
    args = block.get("input")
    if args is None:
        args = {}
    args = expect_dict(args, f"{where}.input")
    return ToolCall(
        id=expect_str(block.get("id"), f"{where}.id", required=True),
        name=expect_str(block.get("name"), f"{where}.name", required=True),
        arguments=orjson.dumps(args).decode(),
    )


def _parse_tool_result(block: dict[str, Any], where: str) -> Message:
    tool_use_id = expect_str(block.get("tool_use_id"), f"{where}.tool_use_id", required=True)
    raw = block.get("content")
    parts: list[ContentPart] = []
    if isinstance(raw, str):
        parts.append(TextPart(raw))
    elif raw is not None:
        for k, item in enumerate(expect_list(raw, f"{where}.content") or []):
            at = f"{where}.content[{k}]"
            item = expect_dict(item, at)
            if item.get("type") == "text":
                parts.append(TextPart(expect_str(item.get("text"), f"{at}.text", required=True)))
            elif item.get("type") == "image":
                parts.append(_parse_image(item.get("source"), f"{at}.source"))
            else:
                raise invalid(f"'{at}.type' must be 'text' or 'image'.", f"{at}.type")
    return Message(
        role="tool",
        content=tuple(parts),
        tool_call_id=tool_use_id,
        is_error=bool(expect_bool(block.get("is_error"), f"{where}.is_error")),
    )


def _parse_tool(raw: object, where: str) -> Tool:
    tool = expect_dict(raw, where)
    if tool.get("type") not in (None, "custom"):
        raise invalid(
            f"'{where}.type' {tool.get('type')!r} is not supported: only custom tools are.",
            f"{where}.type",
        )
    name = expect_str(tool.get("name"), f"{where}.name", required=True)
    if not name:
        raise invalid(f"'{where}.name' must not be empty.", f"{where}.name")
    if tool.get("input_schema") is None:
        raise invalid(f"'{where}.input_schema' is required.", f"{where}.input_schema")
    return Tool(
        name=name,
        description=expect_str(tool.get("description"), f"{where}.description"),
        parameters=expect_dict(tool.get("input_schema"), f"{where}.input_schema"),
    )


def _parse_tool_choice(raw: object) -> ToolChoice | None:
    if raw is None:
        return None
    choice = expect_dict(raw, "tool_choice")
    kind = choice.get("type")
    if kind not in TOOL_CHOICE_TYPES:
        raise invalid(
            f"'tool_choice.type' must be one of {', '.join(TOOL_CHOICE_TYPES)}.", "tool_choice.type"
        )
    name = None
    if kind == "tool":
        name = expect_str(choice.get("name"), "tool_choice.name", required=True)
    where = "tool_choice.disable_parallel_tool_use"
    disable = expect_bool(choice.get("disable_parallel_tool_use"), where)
    parallel = None if disable is None else not disable
    mode = {"any": "required"}.get(kind, kind)
    return ToolChoice(mode=mode, name=name, parallel=parallel)  # type: ignore[arg-type]

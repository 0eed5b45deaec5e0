"""OpenAI Chat Completions JSON <-> the internal model, both directions.

Shared by the upstream adapter (we send this JSON to OpenAI-compatible servers) and the
client codec (clients send it to us), since it is one wire format.
"""

from __future__ import annotations

from typing import Any

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

KNOWN_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "seed",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "metadata",
}

ROLES = ("system", "developer", "user", "assistant", "tool")

# --- request: JSON -> internal ----------------------------------------------------


def parse_chat_request(body: object) -> ChatRequest:
    body = expect_dict(body, "body")
    messages = expect_list(body.get("messages"), "messages", required=True)
    if not messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    stop_list = expect_list(stop, "stop") or []
    stream_options = expect_dict(body.get("stream_options"), "stream_options", required=False)
    n = expect_int(body.get("n"), "n", minimum=1, maximum=128)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    metadata = expect_dict(body.get("metadata"), "metadata", required=False) or {}
    return ChatRequest(
        model=expect_str(body.get("model"), "model", required=True),
        messages=tuple(_parse_message(m, f"messages[{i}]") for i, m in enumerate(messages)),
        stream=bool(expect_bool(body.get("stream"), "stream")),
        max_tokens=expect_int(max_tokens, "max_tokens", minimum=1),
        temperature=expect_number(body.get("temperature"), "temperature", 0, 2),
        top_p=expect_number(body.get("top_p"), "top_p", 0, 1),
        stop=tuple(expect_str(s, f"stop[{i}]", required=True) for i, s in enumerate(stop_list)),
        n=n or 1,
        seed=expect_int(body.get("seed"), "seed"),
        user=expect_str(body.get("user"), "user"),
        tools=tuple(_parse_tool(t, f"tools[{i}]") for i, t in enumerate(_tools(body))),
        tool_choice=_parse_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")),
        response_format=_parse_response_format(body.get("response_format")),
        include_usage=bool(stream_options and stream_options.get("include_usage")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        extra={k: v for k, v in body.items() if k not in KNOWN_FIELDS},
    )


def _tools(body: dict) -> list:
    return expect_list(body.get("tools"), "tools") or []


def _parse_message(raw: object, where: str) -> Message:
    msg = expect_dict(raw, where)
    role = msg.get("role")
    if role not in ROLES:
        raise invalid(f"{where}.role must be one of {', '.join(ROLES)}.", f"{where}.role")
    if role == "developer":
        role = "system"
    tool_calls = tuple(
        _parse_tool_call(tc, f"{where}.tool_calls[{i}]")
        for i, tc in enumerate(expect_list(msg.get("tool_calls"), f"{where}.tool_calls") or [])
    )
    tool_call_id = None
    if role == "tool":
        tool_call_id = expect_str(msg.get("tool_call_id"), f"{where}.tool_call_id", required=True)
    content = _parse_content(msg.get("content"), f"{where}.content", role, bool(tool_calls))
    return Message(
        role=role,
        content=content,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        name=expect_str(msg.get("name"), f"{where}.name"),
    )


def _parse_content(
    raw: object, where: str, role: str, has_tool_calls: bool
) -> tuple[ContentPart, ...]:
    if raw is None:
        if role == "assistant":
            return ()
        raise invalid(f"{where} is required for role '{role}'.", where)
    if isinstance(raw, str):
        return (TextPart(raw),)
    parts = []
    for i, part in enumerate(expect_list(raw, where) or []):
        part = expect_dict(part, f"{where}[{i}]")
        kind = part.get("type")
        if kind == "text":
            parts.append(TextPart(expect_str(part.get("text"), f"{where}[{i}].text", True)))
        elif kind == "image_url":
            parts.append(_parse_image(part.get("image_url"), f"{where}[{i}].image_url"))
        else:
            raise invalid(f"{where}[{i}].type '{kind}' is not supported.", f"{where}[{i}].type")
    return tuple(parts)


def _parse_image(raw: object, where: str) -> ImagePart:
    if isinstance(raw, str):
        raw = {"url": raw}
    image = expect_dict(raw, where)
    url = expect_str(image.get("url"), f"{where}.url", required=True)
    detail = expect_str(image.get("detail"), f"{where}.detail")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header or not data:
            raise invalid(f"{where}.url must be a base64 data URL or an http(s) URL.", where)
        return ImagePart(data=data, media_type=header[5:].split(";")[0], detail=detail)
    if not url.startswith(("http://", "https://")):
        raise invalid(f"{where}.url must be a base64 data URL or an http(s) URL.", where)
    return ImagePart(url=url, detail=detail)


def _parse_tool_call(raw: object, where: str) -> ToolCall:
    call = expect_dict(raw, where)
    fn = expect_dict(call.get("function"), f"{where}.function")
    return ToolCall(
        id=expect_str(call.get("id"), f"{where}.id", required=True),
        name=expect_str(fn.get("name"), f"{where}.function.name", required=True),
        arguments=expect_str(fn.get("arguments"), f"{where}.function.arguments") or "{}",
    )


def _parse_tool(raw: object, where: str) -> Tool:
    tool = expect_dict(raw, where)
    if tool.get("type", "function") != "function":
        raise invalid(f"{where}.type must be 'function'.", f"{where}.type")
    fn = expect_dict(tool.get("function"), f"{where}.function")
    return Tool(
        name=expect_str(fn.get("name"), f"{where}.function.name", required=True),
        description=expect_str(fn.get("description"), f"{where}.function.description"),
        parameters=expect_dict(fn.get("parameters"), f"{where}.function.parameters", False) or {},
    )


def _parse_tool_choice(raw: object, parallel: object) -> ToolChoice | None:
    parallel_flag = expect_bool(parallel, "parallel_tool_calls")
    if raw is None:
        return ToolChoice(parallel=parallel_flag) if parallel_flag is not None else None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw, parallel=parallel_flag)  # type: ignore[arg-type]
    choice = expect_dict(raw, "tool_choice")
    fn = expect_dict(choice.get("function"), "tool_choice.function")
    name = expect_str(fn.get("name"), "tool_choice.function.name", required=True)
    return ToolChoice(mode="tool", name=name, parallel=parallel_flag)


def _parse_response_format(raw: object) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = expect_dict(raw, "response_format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        spec = expect_dict(fmt.get("json_schema"), "response_format.json_schema")
        return ResponseFormat(
            type="json_schema",
            schema=expect_dict(spec.get("schema"), "response_format.json_schema.schema", False),
            name=expect_str(spec.get("name"), "response_format.json_schema.name") or "response",
            strict=expect_bool(spec.get("strict"), "response_format.json_schema.strict"),
        )
    raise invalid("response_format.type must be text, json_object or json_schema.")


# --- request: internal -> JSON ----------------------------------------------------


def chat_request_json(req: ChatRequest, upstream_model: str | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(req.extra)
    if upstream_model is not None:
        out["model"] = upstream_model
    out["messages"] = [message_json(m) for m in req.messages]
    if req.stream:
        out["stream"] = True
        # Always ask for usage: it is what we bill; the client's own wish is honoured downstream.
        out["stream_options"] = {"include_usage": True}
    optional = {
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "seed": req.seed,
        "user": req.user,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if req.stop:
        out["stop"] = list(req.stop)
    if req.n != 1:
        out["n"] = req.n
    if req.tools:
        out["tools"] = [tool_json(t) for t in req.tools]
    if req.tool_choice is not None:
        _put_tool_choice(out, req.tool_choice)
    if req.response_format is not None:
        out["response_format"] = response_format_json(req.response_format)
    if req.metadata:
        out["metadata"] = dict(req.metadata)
    return out


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.role == "assistant" and not m.content:
        out["content"] = None
    elif all(isinstance(p, TextPart) for p in m.content):
        out["content"] = m.text
    else:
        out["content"] = [_part_json(p) for p in m.content]
    if m.tool_calls:
        out["tool_calls"] = [tool_call_json(tc) for tc in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _part_json(p: ContentPart) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    url = p.url or f"data:{p.media_type};base64,{p.data}"
    image: dict[str, Any] = {"url": url}
    if p.detail:
        image["detail"] = p.detail
    return {"type": "image_url", "image_url": image}


def tool_call_json(tc: ToolCall) -> dict[str, Any]:
    return {
        "id": tc.id,
        "type": "function",
        "function": {"name": tc.name, "arguments": tc.arguments},
    }


def tool_json(t: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object"}}
    if t.description:
        fn["description"] = t.description
    return {"type": "function", "function": fn}


def _put_tool_choice(out: dict[str, Any], choice: ToolChoice) -> None:
    if choice.mode == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice.mode != "auto" or choice.parallel is None:
        out["tool_choice"] = choice.mode
    if choice.parallel is not None:
        out["parallel_tool_calls"] = choice.parallel


def response_format_json(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


# --- response: JSON <-> internal ---------------------------------------------------


def parse_chat_response(data: dict[str, Any]) -> ChatResponse:
    choices = []
    for i, raw in enumerate(data.get("choices") or []):
        msg = raw.get("message") or {}
        content = msg.get("content")
        calls = tuple(
            ToolCall(tc.get("id", ""), tc["function"]["name"], tc["function"].get("arguments", ""))
            for tc in msg.get("tool_calls") or []
        )
        message = Message(
            role="assistant",
            content=(TextPart(content),) if isinstance(content, str) and content else (),
            tool_calls=calls,
        )
        reason = raw.get("finish_reason")
        choices.append(Choice(raw.get("index", i), message, normalise_finish(reason)))
    return ChatResponse(
        id=data.get("id") or "",
        model=data.get("model") or "",
        choices=tuple(choices),
        usage=parse_usage(data.get("usage")),
        created=data.get("created") or 0,
    )


def normalise_finish(reason: str | None) -> Any:
    if reason is None:
        return None
    if reason == "function_call":
        return "tool_calls"
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def parse_usage(raw: dict[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens")
    reasoning = (raw.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return Usage(raw.get("prompt_tokens"), raw.get("completion_tokens"), cached, reasoning)


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens or 0,
        "completion_tokens": usage.output_tokens or 0,
        "total_tokens": (usage.input_tokens or 0) + (usage.output_tokens or 0),
    }
    if usage.cached_input_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def chat_response_json(resp: ChatResponse, public_model: str) -> dict[str, Any]:
    choices = []
    for c in resp.choices:
        msg: dict[str, Any] = {"role": "assistant", "content": c.message.text or None}
        if c.message.tool_calls:
            msg["tool_calls"] = [tool_call_json(tc) for tc in c.message.tool_calls]
        msg["refusal"] = None
        choices.append(
            {"index": c.index, "message": msg, "logprobs": None, "finish_reason": c.finish_reason}
        )
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": public_model,
        "choices": choices,
        "usage": usage_json(resp.usage),
    }

"""OpenAI Responses and Conversations JSON <-> the internal model. Pure translation, no I/O.

`parse_request` turns a `POST /v1/responses` body into a `ResponsesRequest`: a `ChatRequest` that
holds only the *new* input items, plus the state references (`previous_response_id`,
`conversation`) that the caller resolves into earlier messages. `render_*` build the objects the
official SDK validates (`openai.types.responses.Response`, `ResponseItemList`, `Conversation`...).
The stream encoder lives in `responses_stream.py`.

Fields we do not model (`include`, `truncation`, `background`, `max_tool_calls`, ...) are dropped,
not put into `ChatRequest.extra`: `extra` goes verbatim to Chat Completions upstreams, which would
reject Responses-only fields. The few that mean the same in Chat Completions are translated into
`extra` (see `_extra`).

Item ids: a stored message renders to one or more items (an assistant turn with text and two tool
calls is three). The first item takes the message's id, the n-th further one `"{id}_{n}"`, so
listings are stable without storing an id per item (see `item_ids`).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
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

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")
IMAGE_DETAILS = ("low", "high", "auto", "original")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# Top-level fields that Chat Completions understands under the same name and meaning.
PASSTHROUGH_FIELDS = ("prompt_cache_key", "safety_identifier", "service_tier")
# Items a client may echo back that carry nothing a Chat Completions upstream can take: the
# model's own (possibly encrypted) reasoning. Dropped, as the Anthropic codec drops thinking.
IGNORED_ITEMS = ("reasoning",)
# Finish reasons after which a response is `incomplete`, and the reason OpenAI gives.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """`resp_`/`msg_`/`fc_`/`conv_` + 48 random hex digits (OpenAI's ids are as long)."""
    return (prefix if prefix.endswith("_") else prefix + "_") + secrets.token_hex(24)


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    chat: ChatRequest  # messages = the new input items only; instructions are not among them
    instructions: str | None
    previous_response_id: str | None
    conversation: str | None
    store: bool = True


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What a rendered Response echoes besides the answer itself."""

    id: str
    created_at: int
    model: str  # the public model name
    request: ResponsesRequest
    conversation_id: str | None = None
    status: str = "completed"  # "completed" becomes "incomplete" when the answer was cut short
    completed_at: int | None = None  # rendered only while the status is "completed"


# --- request: JSON -> internal ----------------------------------------------------


def parse_request(body: object) -> ResponsesRequest:
    body = expect_dict(body, "body")
    previous = expect_str(body.get("previous_response_id"), "previous_response_id")
    conversation = _parse_conversation(body.get("conversation"))
    if previous is not None and conversation is not None:
        # OpenAI rejects the pair too: both name the history to continue from.
        raise invalid(
            "Mutually exclusive parameters: provide only one of 'previous_response_id' or "
            "'conversation'.",
            "conversation",
        )
    if body.get("prompt") is not None:
        raise invalid("Stored prompt templates ('prompt') are not supported.", "prompt")
    raw_input = body.get("input")
    if raw_input is None:
        if previous is None and conversation is None:
            raise invalid("'input' is required.", "input")
        messages: tuple[Message, ...] = ()
    elif isinstance(raw_input, str):
        messages = (Message("user", (TextPart(raw_input),)),)
    elif isinstance(raw_input, list):
        messages = parse_items(raw_input, "input")
        if not messages and previous is None and conversation is None:
            raise invalid("'input' must contain at least one item.", "input")
    else:
        raise invalid("'input' must be a string or an array of input items.", "input")
    metadata = expect_dict(body.get("metadata"), "metadata", required=False) or {}
    text = expect_dict(body.get("text"), "text", required=False) or {}
    tools = expect_list(body.get("tools"), "tools") or []
    chat = ChatRequest(
        model=expect_str(body.get("model"), "model", required=True),
        messages=messages,
        stream=bool(expect_bool(body.get("stream"), "stream")),
        max_tokens=expect_int(body.get("max_output_tokens"), "max_output_tokens", minimum=1),
        temperature=expect_number(body.get("temperature"), "temperature", 0, 2),
        top_p=expect_number(body.get("top_p"), "top_p", 0, 1),
        user=expect_str(body.get("user"), "user"),
        tools=tuple(_parse_tool(t, f"tools[{i}]") for i, t in enumerate(tools)),
        tool_choice=_parse_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")),
        response_format=_parse_format(text.get("format")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        extra=_extra(body, text),
    )
    store = expect_bool(body.get("store"), "store")
    return ResponsesRequest(
        chat=chat,
        instructions=expect_str(body.get("instructions"), "instructions"),
        previous_response_id=previous,
        conversation=conversation,
        store=True if store is None else store,
    )


def _parse_conversation(raw: object) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    conv = expect_dict(raw, "conversation")
    return expect_str(conv.get("id"), "conversation.id", required=True)


def _extra(body: dict[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    out = {k: body[k] for k in PASSTHROUGH_FIELDS if body.get(k) is not None}
    reasoning = expect_dict(body.get("reasoning"), "reasoning", required=False) or {}
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise invalid(
                f"'reasoning.effort' must be one of {', '.join(REASONING_EFFORTS)}.",
                "reasoning.effort",
            )
        out["reasoning_effort"] = effort
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if verbosity not in ("low", "medium", "high"):
            raise invalid("'text.verbosity' must be low, medium or high.", "text.verbosity")
        out["verbosity"] = verbosity
    return out


def parse_items(raw: object, param: str = "items") -> tuple[Message, ...]:
    """Responses input items -> messages.

    A `function_call` joins the assistant message right before it (or starts one), since Chat
    Completions upstreams want one assistant turn holding all its calls before their results.
    """
    items = expect_list(raw, param, required=True) or []
    messages: list[Message] = []
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        item = expect_dict(item, where)
        kind = item.get("type", "message")  # an "easy" message may leave out its type
        if kind == "message":
            messages.append(_parse_message(item, where))
        elif kind == "function_call":
            call = _parse_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                messages[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, call))
            else:
                messages.append(Message("assistant", tool_calls=(call,)))
        elif kind == "function_call_output":
            messages.append(_parse_call_output(item, where))
        elif kind in IGNORED_ITEMS:
            continue
        elif kind == "item_reference":
            raise invalid(
                f"'{where}': item references are not supported; continue with "
                "'previous_response_id' or 'conversation' instead.",
                f"{where}.type",
            )
        else:
            raise invalid(
                f"'{where}.type' {kind!r} is not supported; use message, function_call or "
                "function_call_output.",
                f"{where}.type",
            )
    return tuple(messages)


def _parse_message(item: dict[str, Any], where: str) -> Message:
    role = item.get("role")
    if role not in ROLES:
        raise invalid(f"'{where}.role' must be one of {', '.join(ROLES)}.", f"{where}.role")
    content = item.get("content")
    if content is None:
        raise invalid(f"'{where}.content' is required.", f"{where}.content")
    parts = _parse_parts(content, f"{where}.content", images=role != "assistant")
    return Message("system" if role == "developer" else role, parts)


def _parse_parts(raw: object, where: str, images: bool) -> tuple[ContentPart, ...]:
    """A string, or a list of parts. Text parts are accepted under either name for any role."""
    if isinstance(raw, str):
        return (TextPart(raw),)
    parts: list[ContentPart] = []
    for i, part in enumerate(expect_list(raw, where) or []):
        at = f"{where}[{i}]"
        part = expect_dict(part, at)
        kind = part.get("type")
        if kind in TEXT_PARTS:
            parts.append(TextPart(expect_str(part.get("text"), f"{at}.text", required=True)))
        elif kind == "refusal":
            parts.append(TextPart(expect_str(part.get("refusal"), f"{at}.refusal", True)))
        elif kind == "input_image" and images:
            parts.append(_parse_image(part, at))
        elif kind == "input_image":
            raise invalid(f"'{at}': assistant messages cannot hold images.", f"{at}.type")
        elif kind == "input_file":
            raise invalid(f"'{at}': input_file parts are not supported.", f"{at}.type")
        else:
            raise invalid(f"'{at}.type' {kind!r} is not supported.", f"{at}.type")
    return tuple(parts)


def _parse_image(part: dict[str, Any], where: str) -> ImagePart:
    detail = expect_str(part.get("detail"), f"{where}.detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise invalid(
            f"'{where}.detail' must be one of {', '.join(IMAGE_DETAILS)}.", f"{where}.detail"
        )
    url = expect_str(part.get("image_url"), f"{where}.image_url")
    if url is None:
        # We keep no files, so a `file_id` has nothing to point at.
        if part.get("file_id") is not None:
            raise invalid(
                f"'{where}.file_id' is not supported; send 'image_url'.", f"{where}.file_id"
            )
        raise invalid(f"'{where}.image_url' is required.", f"{where}.image_url")
    bad_url = invalid(
        f"'{where}.image_url' must be a base64 data URL or an http(s) URL.", f"{where}.image_url"
    )
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header or not data:
            raise bad_url
        return ImagePart(data=data, media_type=header[5:].split(";")[0], detail=detail)
    if not url.startswith(("http://", "https://")):
        raise bad_url
    return ImagePart(url=url, detail=detail)


def _parse_call(item: dict[str, Any], where: str) -> ToolCall:
    return ToolCall(
        id=expect_str(item.get("call_id"), f"{where}.call_id", required=True),
        name=expect_str(item.get("name"), f"{where}.name", required=True),
        arguments=expect_str(item.get("arguments"), f"{where}.arguments", required=True),
    )


def _parse_call_output(item: dict[str, Any], where: str) -> Message:
    output = item.get("output")
    if output is None:
        raise invalid(f"'{where}.output' is required.", f"{where}.output")
    return Message(
        "tool",
        _parse_parts(output, f"{where}.output", images=True),
        tool_call_id=expect_str(item.get("call_id"), f"{where}.call_id", required=True),
        name=expect_str(item.get("name"), f"{where}.name"),
    )


def _parse_tool(raw: object, where: str) -> Tool:
    tool = expect_dict(raw, where)
    kind = tool.get("type")
    if kind != "function":
        raise invalid(
            f"'{where}.type' {kind!r} is not supported; only function tools are.", f"{where}.type"
        )
    return Tool(
        name=expect_str(tool.get("name"), f"{where}.name", required=True),
        description=expect_str(tool.get("description"), f"{where}.description"),
        parameters=expect_dict(tool.get("parameters"), f"{where}.parameters", False) or {},
    )


def _parse_tool_choice(raw: object, parallel: object) -> ToolChoice | None:
    parallel_flag = expect_bool(parallel, "parallel_tool_calls")
    if raw is None:
        return ToolChoice(parallel=parallel_flag) if parallel_flag is not None else None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw, parallel=parallel_flag)  # type: ignore[arg-type]
    choice = expect_dict(raw, "tool_choice")
    if choice.get("type") != "function":
        raise invalid(
            "'tool_choice' must be auto, none, required or {type: function, name}.", "tool_choice"
        )
    name = expect_str(choice.get("name"), "tool_choice.name", required=True)
    return ToolChoice(mode="tool", name=name, parallel=parallel_flag)


def _parse_format(raw: object) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = expect_dict(raw, "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        return ResponseFormat(
            type="json_schema",
            schema=expect_dict(fmt.get("schema"), "text.format.schema"),
            name=expect_str(fmt.get("name"), "text.format.name") or "response",
            strict=expect_bool(fmt.get("strict"), "text.format.strict"),
        )
    raise invalid("'text.format.type' must be text, json_object or json_schema.", "text.format")


# --- items: internal -> JSON ------------------------------------------------------


def item_ids(message: Message, item_id: str) -> list[str]:
    """The ids of the items `message` renders to: `item_id`, then `item_id_1`, `item_id_2`..."""
    count = len(message.tool_calls) + (1 if _has_message_item(message) else 0)
    return [item_id] + [f"{item_id}_{n}" for n in range(1, count)]


def _has_message_item(m: Message) -> bool:
    # An assistant turn that only calls tools has no message item; an empty answer still has one.
    return m.role != "assistant" or bool(m.content) or not m.tool_calls


def render_item(message: Message, item_id: str) -> list[dict[str, Any]]:
    """One stored message -> its Responses items (ids as `item_ids`)."""
    ids = item_ids(message, item_id)
    if message.role == "tool":
        return [function_call_output_item(message, ids[0])]
    if message.role != "assistant":
        content = [_input_part(p) for p in message.content]
        return [
            {
                "type": "message",
                "id": ids[0],
                "role": message.role,
                "status": "completed",
                "content": content,
            }
        ]
    items = []
    if _has_message_item(message):
        items.append(output_message_item(ids.pop(0), message.text, "completed"))
    for call, call_item_id in zip(message.tool_calls, ids, strict=True):
        items.append(function_call_item(call_item_id, call, "completed"))
    return items


def output_message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [output_text_part(text)],
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def function_call_item(item_id: str, call: ToolCall, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def function_call_output_item(message: Message, item_id: str) -> dict[str, Any]:
    output: Any = message.text
    if not all(isinstance(p, TextPart) for p in message.content):
        output = [_input_part(p) for p in message.content]
    return {
        "type": "function_call_output",
        "id": item_id,
        "call_id": message.tool_call_id,
        "output": output,
        "status": "completed",
    }


def _input_part(p: ContentPart) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "input_text", "text": p.text}
    url = p.url or f"data:{p.media_type};base64,{p.data}"
    return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}


# --- the Response object ------------------------------------------------------------


def render_response(
    resp: ChatResponse, info: ResponseInfo, output_ids: list[str] | None = None
) -> dict[str, Any]:
    """The full Response object. `output_ids` name the output items in order (e.g.
    `item_ids(message, stored_id)`, so they match the stored conversation); missing ones are
    generated."""
    choice = resp.choices[0] if resp.choices else None
    message = choice.message if choice else Message("assistant")
    reason = choice.finish_reason if choice else None
    items = render_item(message, "_")  # for the layout; the ids are replaced below
    for i, item in enumerate(items):
        given = output_ids[i] if output_ids and i < len(output_ids) else None
        item["id"] = given or new_id("msg" if item["type"] == "message" else "fc")
    if reason in INCOMPLETE and items:
        items[-1]["status"] = "incomplete"  # the item being generated when the limit hit
    return response_json(info, items, resp.usage, reason)


def response_json(
    info: ResponseInfo,
    output: list[dict[str, Any]],
    usage: Usage | None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object around `output`. Also what the stream's lifecycle events carry."""
    req = info.request
    chat = req.chat
    status = info.status
    if status == "completed" and finish_reason in INCOMPLETE:
        status = "incomplete"
    incomplete = {"reason": INCOMPLETE.get(finish_reason or "")} if status == "incomplete" else None
    choice = chat.tool_choice
    text: dict[str, Any] = {"format": response_format_json(chat.response_format)}
    if chat.extra.get("verbosity"):
        text["verbosity"] = chat.extra["verbosity"]
    conversation = info.conversation_id or req.conversation
    return {
        "id": info.id,
        "object": "response",
        "created_at": info.created_at,
        "status": status,
        "background": False,
        "completed_at": info.completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": req.instructions,
        "max_output_tokens": chat.max_tokens,
        "max_tool_calls": None,
        "model": info.model,
        "output": output,
        "parallel_tool_calls": True
        if choice is None or choice.parallel is None
        else choice.parallel,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": chat.extra.get("prompt_cache_key"),
        "reasoning": {"effort": chat.extra.get("reasoning_effort"), "summary": None},
        "safety_identifier": chat.extra.get("safety_identifier"),
        "store": req.store,
        "temperature": chat.temperature,
        "text": text,
        "tool_choice": tool_choice_json(choice),
        "tools": [tool_json(t) for t in chat.tools],
        "top_p": chat.top_p,
        "truncation": "disabled",
        "usage": usage_json(usage) if usage is not None else None,
        "user": chat.user,
        "metadata": dict(chat.metadata),
        "conversation": {"id": conversation} if conversation else None,
    }


def usage_json(usage: Usage) -> dict[str, Any]:
    # The SDK's ResponseUsage has no optional counts: unknown ones are rendered as 0.
    inp, out = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": inp,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens or 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": inp + out,
    }


def tool_json(t: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "name": t.name,
        "description": t.description,
        "parameters": t.parameters or {"type": "object", "properties": {}},
    }


def tool_choice_json(choice: ToolChoice | None) -> Any:
    if choice is None:
        return "auto"
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def response_format_json(fmt: ResponseFormat | None) -> dict[str, Any]:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt else "text"}
    out: dict[str, Any] = {
        "type": "json_schema",
        "name": fmt.name or "response",
        "schema": fmt.schema or {},
    }
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    return out


# --- lists, conversations, deletions ----------------------------------------------


def render_list(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    # OpenAI sends null ids for an empty page; the SDK's pagination reads them as "no more".
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def render_conversation(
    conversation_id: str, created_at: int, metadata: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": created_at,
        "metadata": metadata,
    }


def render_deleted(object_id: str, kind: str) -> dict[str, Any]:
    """`kind` "response" -> OpenAI's `{"object": "response", "deleted": true}` (the SDK returns
    None for it); "conversation" -> the SDK's ConversationDeletedResource."""
    obj = "conversation.deleted" if kind == "conversation" else kind
    return {"id": object_id, "object": obj, "deleted": True}

"""Gemini `generateContent` JSON <-> the internal model. Upstream side only: we never expose a
Gemini-format route, so there is no client-side parsing here.

Request notes:
* system messages (wherever they appear) become `systemInstruction`; assistant -> role `model`;
  tool results -> role `user` with a `functionResponse` part named after the assistant tool call
  they answer (Gemini matches results by name and order, so we send no call ids); consecutive
  contents with the same role are merged, which puts parallel results in one turn as Gemini
  expects. Empty text parts are dropped (Gemini rejects them) and so are messages left empty.
* Gemini 3+ rejects a replayed model turn whose first `functionCall` part lacks the
  `thoughtSignature` it came with. The internal model cannot carry real signatures, so for those
  models we send Google's documented placeholder that skips the check (`SKIP_SIGNATURE`).
* Fields Gemini has no equivalent for (`user`, `metadata`, `parallel_tool_calls`, `extra`)
  are dropped rather than forwarded: Gemini rejects unknown fields.

Response notes: text parts are joined (`thought` summaries are skipped); a `functionCall` without
an `id` gets the deterministic id `call_<candidate>_<n>`, the same in streamed and whole
responses. Ids repeat across turns, which is harmless here because a tool result is matched to the
latest assistant call carrying that id.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import orjson

from gateway.errors import GatewayError, invalid
from gateway.providers.gemini.schema import gemini_schema
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)

FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)
IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
}
DEFAULT_IMAGE_TYPE = "image/jpeg"  # when neither the part nor the URL's extension says
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
# The bytes b"skip_thought_signature_validator", base64-encoded as JSON carries `bytes` fields.
SKIP_SIGNATURE = base64.b64encode(b"skip_thought_signature_validator").decode()
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")

# --- request: internal -> JSON ----------------------------------------------------


def chat_request_json(req: ChatRequest, upstream_model: str = "") -> dict[str, Any]:
    system, contents = contents_json(req.messages, needs_signature(upstream_model))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if config := generation_config(req):
        out["generationConfig"] = config
    if req.tools:
        out["tools"] = [{"functionDeclarations": [function_declaration(t) for t in req.tools]}]
        if req.tool_choice is not None:
            out["toolConfig"] = tool_config(req.tool_choice)
    return out


def needs_signature(upstream_model: str) -> bool:
    match = _GEMINI_VERSION.search(upstream_model.lower())
    return match is not None and int(match.group(1)) >= 3


def contents_json(
    messages: tuple[Message, ...], sign_calls: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """-> (systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, latest call wins
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role == "system":
            system.extend({"text": p.text} for p in m.content if isinstance(p, TextPart) and p.text)
            continue
        if m.role == "tool":
            role = "user"
            parts = [_function_response(m, call_names, where)]
            parts += [image_part(p) for p in m.content if isinstance(p, ImagePart)]
        elif m.role == "assistant":
            role, parts = "model", _parts(m.content)
            for j, tc in enumerate(m.tool_calls):
                call_names[tc.id] = tc.name
                args = _arguments(tc, f"{where}.tool_calls[{j}].function.arguments")
                part: dict[str, Any] = {"functionCall": {"name": tc.name, "args": args}}
                if sign_calls and j == 0:
                    part["thoughtSignature"] = SKIP_SIGNATURE
                parts.append(part)
        else:
            role, parts = "user", _parts(m.content)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _parts(content: tuple[ContentPart, ...]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append({"text": p.text})
        else:
            parts.append(image_part(p))
    return parts


def image_part(p: ImagePart) -> dict[str, Any]:
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type or DEFAULT_IMAGE_TYPE, "data": p.data}}
    url = p.url or ""
    return {"fileData": {"mimeType": p.media_type or guess_image_type(url), "fileUri": url}}


def guess_image_type(url: str) -> str:
    name = urlparse(url).path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return IMAGE_TYPES.get(ext, DEFAULT_IMAGE_TYPE)


def _arguments(tc: ToolCall, where: str) -> dict[str, Any]:
    if not tc.arguments.strip():
        return {}
    try:
        args = orjson.loads(tc.arguments)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise invalid(f"'{where}' must be a JSON object for this model.", where)
    return args


def _function_response(m: Message, call_names: dict[str, str], where: str) -> dict[str, Any]:
    name = call_names.get(m.tool_call_id or "") or m.name
    if not name:
        raise invalid(
            f"'{where}.tool_call_id' does not match a tool call of an earlier assistant message.",
            f"{where}.tool_call_id",
        )
    text = m.text
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    # Gemini wants an object; its docs suggest an "error" key for a failed call.
    response = parsed if isinstance(parsed, dict) else {"error" if m.is_error else "content": text}
    return {"functionResponse": {"name": name, "response": response}}


def generation_config(req: ChatRequest) -> dict[str, Any]:
    optional = {
        "maxOutputTokens": req.max_tokens,
        "temperature": req.temperature,
        "topP": req.top_p,
        "seed": req.seed,
    }
    config: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if req.stop:
        config["stopSequences"] = list(req.stop)
    if req.n != 1:
        config["candidateCount"] = req.n
    fmt = req.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema:
            config["responseSchema"] = gemini_schema(fmt.schema, ordering=True)
    return config


def function_declaration(tool: Tool) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    params = gemini_schema(tool.parameters) if tool.parameters else {}
    if params.get("properties"):  # a parameterless function sends none: Gemini rejects `{}`
        decl["parameters"] = params
    return decl


def tool_config(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": TOOL_MODES[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


# --- response: JSON -> internal ---------------------------------------------------


def parse_chat_response(data: dict[str, Any]) -> ChatResponse:
    candidates = [c for c in data.get("candidates") or [] if isinstance(c, dict)]
    if not candidates:
        raise missing_candidates(data)
    choices = []
    for position, cand in enumerate(candidates):
        index = candidate_index(cand, position)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for part in parts_of(cand):
            if text := part_text(part):
                texts.append(text)
            elif isinstance(part.get("functionCall"), dict):
                calls.append(tool_call(part["functionCall"], index, len(calls)))
        message = Message(
            role="assistant",
            content=(TextPart("".join(texts)),) if texts else (),
            tool_calls=tuple(calls),
        )
        choices.append(Choice(index, message, finish_reason(cand.get("finishReason"), bool(calls))))
    return ChatResponse(
        id=data.get("responseId") or new_response_id(),
        model=data.get("modelVersion") or "",
        choices=tuple(choices),
        usage=parse_usage(data.get("usageMetadata")),
        created=int(time.time()),
    )


def missing_candidates(data: dict[str, Any]) -> GatewayError:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason:
        detail = feedback.get("blockReasonMessage")
        message = f"The upstream blocked the prompt ({reason})" + (f": {detail}" if detail else ".")
        return GatewayError("content_filter", message, code="content_filter")
    return GatewayError("upstream_error", "The upstream answered without any candidate.")


def new_response_id() -> str:
    return f"gemini-{uuid.uuid4().hex}"


def candidate_index(cand: dict[str, Any], position: int) -> int:
    index = cand.get("index")  # proto3 JSON omits a zero index
    return index if isinstance(index, int) else position


def parts_of(cand: dict[str, Any]) -> list[dict[str, Any]]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or [] if isinstance(p, dict)]


def part_text(part: dict[str, Any]) -> str:
    text = part.get("text")
    return text if isinstance(text, str) and not part.get("thought") else ""


def tool_call(call: dict[str, Any], choice: int, n: int) -> ToolCall:
    args = call.get("args")
    return ToolCall(
        id=call.get("id") or f"call_{choice}_{n}",
        name=call.get("name") or "",
        arguments=orjson.dumps(args if isinstance(args, dict) else {}).decode(),
    )


def finish_reason(raw: str | None, has_tool_calls: bool) -> FinishReason | None:
    if not raw:
        return None
    if raw == "STOP":
        return "tool_calls" if has_tool_calls else "stop"
    if raw == "MAX_TOKENS":
        return "length"
    return "content_filter" if raw in FILTER_REASONS else "stop"


def parse_usage(meta: object) -> Usage:
    """Thought tokens are billed as output, so they count in `output_tokens` too.

    Gemini omits zero counts, so within a `usageMetadata` a missing prompt/candidate count is 0.
    Tool-use prompt tokens (e.g. grounding results) are billed as input.
    """
    if not isinstance(meta, dict):
        return Usage()
    thoughts = meta.get("thoughtsTokenCount")
    tool_prompt = meta.get("toolUsePromptTokenCount") or 0
    return Usage(
        input_tokens=(meta.get("promptTokenCount") or 0) + tool_prompt,
        output_tokens=(meta.get("candidatesTokenCount") or 0) + (thoughts or 0),
        cached_input_tokens=meta.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )

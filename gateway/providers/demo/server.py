"""The built-in demo provider: an in-process, deterministic OpenAI-compatible server.

It lets `make run` answer real requests with no network and no account, and it goes through
the same OpenAI adapter as a real upstream, so the demo exercises the real translation path.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.providers.sse import encode_sse
from gateway.schemas import UpstreamRequest
from gateway.tokens import count_text_tokens

WORD_DELAY_SECONDS = 0.0


async def serve(req: UpstreamRequest) -> tuple[int, AsyncIterator[bytes]]:
    """Answer one upstream request: the status and the body's chunks."""
    body = orjson.loads(req.body or b"{}")
    if req.url.endswith("/embeddings"):
        return 200, _once(orjson.dumps(_embeddings(body)))
    reply = _reply(body)
    if body.get("stream"):
        return 200, _stream(body, reply)
    return 200, _once(orjson.dumps(_completion(body, reply)))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    last = messages[-1] if messages else {}
    if tools and body.get("tool_choice") != "none" and last.get("role") != "tool":
        fn = tools[0]["function"]
        required = (fn.get("parameters") or {}).get("required") or []
        arguments = orjson.dumps({name: "demo" for name in required}).decode()
        return {"tool_call": {"id": "call_demo_0", "name": fn["name"], "arguments": arguments}}
    if last.get("role") == "tool":
        return {"text": f"The tool answered: {last.get('content')}"}
    said = _last_user_text(messages)[:200]
    wanted = body.get("response_format") or {}
    if wanted.get("type") in ("json_object", "json_schema"):
        schema = (wanted.get("json_schema") or {}).get("schema") or {}
        return {"text": orjson.dumps(_json_answer(schema, said)).decode()}
    return {"text": f"Hello from Waystation's demo model. You said: {said}"}


def _json_answer(schema: dict[str, Any], said: str, depth: int = 0) -> Any:
    """A value of the schema's shape, chosen by the request's text: the same question always
    gets the same answer, and different questions spread over an enum's values."""
    pick = int.from_bytes(hashlib.sha256(said.encode()).digest()[:4], "big")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][pick % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "object" or (kind is None and depth == 0):
        properties = schema.get("properties") or {}
        if not properties:
            return {"answer": f"You said: {said}"}
        return {k: _json_answer(v, said, depth + 1) for k, v in properties.items() if depth < 5}
    if kind == "array":
        return [_json_answer(schema.get("items") or {}, said, depth + 1)] if depth < 5 else []
    if kind in ("integer", "number"):
        return pick % 10
    if kind == "boolean":
        return pick % 2 == 0
    return f"You said: {said}"[: schema.get("maxLength") or 200]


def _usage(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, int]:
    prompt = sum(count_text_tokens(orjson.dumps(m).decode()) for m in body.get("messages") or [])
    completion = count_text_tokens(reply.get("text") or reply["tool_call"]["arguments"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _message(reply: dict[str, Any]) -> dict[str, Any]:
    if "tool_call" in reply:
        call = reply["tool_call"]
        function = {"name": call["name"], "arguments": call["arguments"]}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": function}],
        }
    return {"role": "assistant", "content": reply["text"]}


def _completion(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    finish = "tool_calls" if "tool_call" in reply else "stop"
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "demo"),
        "choices": [{"index": 0, "message": _message(reply), "finish_reason": finish}],
        "usage": _usage(body, reply),
    }


async def _stream(body: dict[str, Any], reply: dict[str, Any]) -> AsyncIterator[bytes]:
    head = {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": body.get("model", "demo"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return encode_sse(orjson.dumps({**head, "choices": [choice]}))

    yield chunk({"role": "assistant", "content": ""})
    if "tool_call" in reply:
        call = reply["tool_call"]
        start = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [start]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["arguments"]}}]})
        yield chunk({}, "tool_calls")
    else:
        for i, word in enumerate(reply["text"].split(" ")):
            await asyncio.sleep(WORD_DELAY_SECONDS)
            yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, "stop")
    usage = _usage(body, reply)
    yield encode_sse(orjson.dumps({**head, "choices": [], "usage": usage}))
    yield b"data: [DONE]\n\n"


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dims = body.get("dimensions") or 16
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(t), dims)}
        for i, t in enumerate(texts)
    ]
    tokens = sum(count_text_tokens(str(t)) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "demo"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = (seed * (dims * 4 // len(seed) + 1))[: dims * 4]
    values = [v / 2**32 - 0.5 for v in struct.unpack(f"<{dims}I", raw)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]

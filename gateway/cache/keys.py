"""What makes two requests the same question: their normalised form, hashed.

The form covers what changes an answer (messages, tools, tool choice, response format,
sampling parameters and fields passed through) and leaves out what doesn't (streaming, usage
reporting, the end user's id, metadata), so a streamed request and a plain one share entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import orjson

from gateway.schemas import ChatRequest, ImagePart, Message


def _message(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": [asdict(part) for part in message.content],
        "tool_calls": [[c.name, c.arguments] for c in message.tool_calls],  # ids vary per run
        "name": message.name,
        "is_error": message.is_error,
    }


def _settings(req: ChatRequest) -> dict[str, Any]:
    return {
        "tools": [asdict(tool) for tool in req.tools],
        "tool_choice": asdict(req.tool_choice) if req.tool_choice else None,
        "response_format": asdict(req.response_format) if req.response_format else None,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": list(req.stop),
        "n": req.n,
        "seed": req.seed,
        "extra": req.extra,
    }


def _digest(*parts: object) -> str:
    data = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def exact_key(namespace: str, req: ChatRequest) -> str:
    return _digest(namespace, req.model, [_message(m) for m in req.messages], _settings(req))


def cache_text(req: ChatRequest) -> str | None:
    """The last user message's text: what the semantic cache compares. None where a message
    isn't plain text (an image changes the question in ways its text can't show)."""
    if not req.messages or req.messages[-1].role != "user":
        return None
    last = req.messages[-1]
    if any(isinstance(part, ImagePart) for part in last.content) or not last.text.strip():
        return None
    return last.text


def context_key(namespace: str, req: ChatRequest, embedding_model: str) -> str:
    """Everything but the last user message: entries compared only within one context, so a
    question asked under another system prompt or conversation never matches."""
    earlier = [_message(m) for m in req.messages[:-1]]
    return _digest(namespace, req.model, embedding_model, earlier, _settings(req))

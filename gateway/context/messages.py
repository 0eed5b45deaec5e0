"""Internal messages as stored in a conversation (JSON), and their token counts."""

from __future__ import annotations

from typing import Any

from gateway import tokens
from gateway.schemas import ImagePart, Message, TextPart, ToolCall


def to_json(message: Message) -> dict[str, Any]:
    parts = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        else:
            parts.append(
                {"type": "image", "url": part.url, "data": part.data,
                 "media_type": part.media_type, "detail": part.detail}
            )  # fmt: skip
    return {
        "role": message.role,
        "content": parts,
        "tool_calls": [[c.id, c.name, c.arguments] for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "is_error": message.is_error,
    }


def from_json(data: dict[str, Any]) -> Message:
    content = tuple(
        TextPart(p["text"])
        if p["type"] == "text"
        else ImagePart(p.get("url"), p.get("data"), p.get("media_type"), p.get("detail"))
        for p in data.get("content", ())
    )
    return Message(
        role=data["role"],
        content=content,
        tool_calls=tuple(ToolCall(*c) for c in data.get("tool_calls", ())),
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
        is_error=bool(data.get("is_error")),
    )


def count(message: Message) -> int:
    """OpenAI's chat accounting for one message; an image as the gateway estimates it."""
    images = sum(isinstance(p, ImagePart) for p in message.content)
    return tokens.message_tokens(message) + images * tokens.IMAGE_TOKENS


def count_text(text: str) -> int:
    return tokens.count_text_tokens(text) + 3  # as a message of its own

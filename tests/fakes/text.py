"""Deterministic content rules shared by every fake.

Usage rule (same for all providers, so tests can compute expected numbers by hand):
  * input tokens  = whitespace-separated words in all the text the request carries in its
    messages / system prompt / contents (tool definitions, tool-call arguments and images
    don't count);
  * output tokens = words in the reply text, plus words in each tool call's arguments JSON
    (times `n` choices for OpenAI);
  * embeddings: input tokens = words of each input (token-id inputs count one per id).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Iterable

from tests.fakes.control import Reply

_PIECE = re.compile(r"^\s+|\S+\s*")


def count_words(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)


def output_tokens(reply: Reply) -> int:
    if reply.output_tokens is not None:
        return reply.output_tokens
    return count_words([reply.text, *(call.arguments for call in reply.tool_calls)])


def text_pieces(text: str) -> list[str]:
    """Split per word, keeping the whitespace, so that "".join(pieces) == text."""
    return _PIECE.findall(text)


def json_pieces(arguments: str) -> list[str]:
    """Cut a tool call's argument JSON into 3+ pieces (when it has 3+ characters), so that
    clients must reassemble partial JSON rather than parse each delta."""
    if not arguments:
        return []
    size = min(8, max(1, len(arguments) // 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def echo(last_user_text: str) -> Reply:
    return Reply(text="echo: " + last_user_text)


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector from a hash of the text. Shorter `dimensions` give the normalised
    prefix of the longer vector, like OpenAI's shortened text-embedding-3 vectors."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    values = [n / 2**31 - 1.0 for n in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embedding_base64(values: list[float]) -> str:
    """Little-endian float32, the layout OpenAI's `encoding_format="base64"` uses."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()

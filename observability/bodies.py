"""The stored form of a call's bodies: zlib-compressed JSON {"request": ..., "response": ...}."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

LEVEL = 6


def encode(bodies: dict[str, Any]) -> tuple[bytes, int]:
    """(compressed, size before compression)."""
    raw = orjson.dumps(bodies, default=str)
    return zlib.compress(raw, LEVEL), len(raw)


def decode(data: bytes | memoryview) -> dict[str, Any]:
    return orjson.loads(zlib.decompress(bytes(data)))

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


def store(rows: list[dict[str, Any]]) -> int:
    """Keep the bodies that came with these usage rows (`body`: data, size, cut); a request
    stored twice keeps its first."""
    from datetime import datetime

    from observability.models import CallBody

    kept = [
        CallBody(
            request_id=row["request_id"],
            tenant_id=row.get("tenant_id"),
            created_at=datetime.fromisoformat(row["created_at"]),
            data=row["body"][0],
            size=row["body"][1],
            truncated=row["body"][2],
        )  # fmt: skip
        for row in rows
        if row.get("body")
    ]
    CallBody.objects.bulk_create(kept, ignore_conflicts=True, batch_size=200)
    return len(kept)

"""The stored form of a call's bodies: zlib-compressed JSON {"request": ..., "response": ...},
Fernet-encrypted (gateway/secrets.py `seal_bytes`).

Sealed here rather than by the model field, so the bytes are already encrypted while they wait
in the usage stream (Redis). Rows stored before encryption are plain zlib and still read;
`manage.py rotate_secrets` seals them, and re-seals all under a new key.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from cryptography.fernet import InvalidToken

from gateway.secrets import open_bytes, seal_bytes

LEVEL = 6


def encode(bodies: dict[str, Any]) -> tuple[bytes, int]:
    """(compressed and sealed, size before compression)."""
    raw = orjson.dumps(bodies, default=str)
    return seal_bytes(zlib.compress(raw, LEVEL)), len(raw)


def decode(data: bytes | memoryview) -> dict[str, Any]:
    """Raises zlib.error for bytes that don't open: corrupt, or sealed with a key no longer
    configured (readers show both as unreadable)."""
    try:
        compressed = open_bytes(data)
    except InvalidToken:
        raise zlib.error("call body: no configured WAYSTATION_SECRETS_KEYS key opens it") from None
    return orjson.loads(zlib.decompress(compressed))


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

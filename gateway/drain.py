"""Draining a gateway process at shutdown (SIGTERM), so a restart costs no request.

`begin()` is called when the shutdown starts (waystation/serve.py's server does it on the
signal). From then on /readyz answers 503 so the load balancer stops sending, while uvicorn
stops accepting connections and lets the running requests finish. A stream still running
GATEWAY_DRAIN_SECONDS later ends with an error event in its route's format (`restarting()`),
not a connection reset; uvicorn then sends the lifespan shutdown, which flushes the usage
events of every finished request (gateway/lifespan.py).

The relay reads `state.expired` once per upstream chunk: a plain attribute, set by a timer on
the event loop, so the hot path pays no clock read.
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

CODE = "gateway_restarting"


class _State:
    __slots__ = ("deadline", "draining", "expired")

    def __init__(self) -> None:
        self.draining = False  # shutdown began: not ready for new work
        self.expired = False  # the drain timeout passed: running streams end now
        self.deadline: float | None = None  # time.monotonic() of the expiry


state = _State()


def begin(seconds: float | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Start draining; idempotent. Safe to call from a signal handler in the loop's thread.

    `loop` runs the expiry timer (default: the running loop); without one, only `draining`
    is set and streams run to their end.
    """
    if state.draining:
        return
    if seconds is None:
        seconds = settings.GATEWAY_DRAIN_SECONDS
    state.draining = True
    state.deadline = time.monotonic() + seconds
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    log.warning("draining: running streams end in %.1f s", seconds)
    if loop is not None and not loop.is_closed():
        # call_soon_threadsafe: a signal handler may interrupt the loop mid-update.
        loop.call_soon_threadsafe(loop.call_later, max(seconds, 0.0), expire)


def expire() -> None:
    if not state.expired:
        state.expired = True
        log.warning("drain timeout passed: ending the streams still running")


def restarting() -> GatewayError:
    """The error a stream cut short by the drain ends with."""
    return GatewayError(
        "overloaded", "The gateway is restarting; retry the request.", status=503, code=CODE
    )


def reset() -> None:
    """Back to serving (tests)."""
    state.draining = state.expired = False
    state.deadline = None

"""ASGI lifespan: at shutdown, flush buffered usage events and close upstream pools."""

from __future__ import annotations

import logging

from gateway import tracing, upstream, usage

log = logging.getLogger(__name__)


async def app(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tracing.setup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await usage.flush()
                await upstream.close_all()
            except Exception:
                log.exception("shutdown flush failed")
            await send({"type": "lifespan.shutdown.complete"})
            return

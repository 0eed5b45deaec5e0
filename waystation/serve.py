"""Run the gateway under uvicorn with a graceful drain on SIGTERM (and SIGINT).

    python -m waystation.serve --host 0.0.0.0 --port 8000 --workers 4

On the signal, uvicorn stops accepting connections and closes idle keep-alive ones; this
server also starts gateway/drain.py, so /readyz answers 503, and streams still running after
GATEWAY_DRAIN_SECONDS end with an error event. uvicorn's graceful-shutdown timeout is set
GRACE_SECONDS beyond that, so the error events go out before uvicorn would cancel (a reset),
and the lifespan shutdown then flushes the usage events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from types import FrameType

import uvicorn
from uvicorn.supervisors import multiprocess

APP = "waystation.asgi:application"
GRACE_SECONDS = 10.0  # after the drain timeout: error events out, non-stream replies done


class DrainingServer(uvicorn.Server):
    """uvicorn's server, starting the gateway's drain when asked to exit."""

    _loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT) and self.started:
            from gateway import drain  # the app (and Django) is loaded once started

            drain.begin(loop=self._loop)
        super().handle_exit(sig, frame)


# uvicorn's worker processes build `multiprocess.Server(config)`; a spawned worker imports
# this module again (as __mp_main__) before it builds one, so the replacement holds there too.
multiprocess.Server = DrainingServer  # type: ignore[misc]


def drain_seconds() -> float:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")
    from django.conf import settings

    return settings.GATEWAY_DRAIN_SECONDS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-*")
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        APP,
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="on",
        log_level=args.log_level,
        access_log=not args.no_access_log,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=int(drain_seconds() + GRACE_SECONDS),
    )
    server = DrainingServer(config)
    if config.workers > 1:
        # Each worker runs a DrainingServer; the supervisor passes SIGTERM on to them.
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        server.run()


if __name__ == "__main__":
    main()

"""Shared machinery: a real aiohttp server on 127.0.0.1 in its own thread and event loop,
plus the part of request handling that is the same for every provider (recording, faults,
writing JSON bodies and SSE streams).

A provider fake subclasses `FakeServer` and supplies its routes, its auth check and its
error format; route handlers are pure functions of the request that return a `JsonReply`
or an `SSEReply`, and this module does the I/O, so every fault works the same everywhere.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

from tests.fakes.control import Control, Fault, RecordedRequest, Reply


@dataclass(frozen=True)
class Frame:
    """One server-sent event. `data` is sent verbatim (already JSON-encoded)."""

    data: str
    event: str | None = None


def frame(payload: Any, event: str | None = None) -> Frame:
    return Frame(orjson.dumps(payload).decode(), event)


@dataclass
class JsonReply:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SSEReply:
    frames: Sequence[Frame]
    content_type: str = "text/event-stream; charset=utf-8"
    line_end: str = "\n"  # Gemini ends SSE lines with CRLF
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """What a route handler gets: the request, its parsed body and this request's fault."""

    request: web.Request
    body: Any
    fault: Fault
    server: FakeServer

    def reply(self, default: Callable[[], Reply]) -> Reply:
        """The next scripted reply, else `default()` (the provider's echo)."""
        return self.server._take_reply() or default()


Handler = Callable[[Call], Awaitable[JsonReply | SSEReply]]


class FakeServer(Control):
    """Base of every provider fake. `start()` it, point a client at `base_url`, `stop()` it."""

    name = "fake"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.root_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._seq_lock = threading.Lock()

    # --- provider hooks --------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path pattern, handler) for aiohttp's router."""
        raise NotImplementedError

    def authenticate(self, call: Call) -> JsonReply | None:
        """None when the request carries the right credentials, else the rejection."""
        raise NotImplementedError

    def error(self, status: int, message: str, error_type: str | None = None) -> JsonReply:
        """The provider's error response for an HTTP status."""
        raise NotImplementedError

    def stream_error(self, message: str, error_type: str | None = None) -> Frame:
        """The provider's error event inside a stream that has already started."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """What a client or the gateway is configured with as this provider's base URL."""
        return self.root_url

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} fake already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name=f"{self.name}-fake", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"{self.name} fake failed to start") from failure[0]
        if not self.root_url:
            raise RuntimeError(f"{self.name} fake did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None
        self.root_url = ""

    def next_id(self) -> int:
        """A per-server counter, so response ids are deterministic within a test run."""
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        # A short shutdown timeout: a test may stop the server mid-delay or mid-stream.
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            host, port = runner.addresses[0][:2]
            self.root_url = f"http://{host}:{port}"
            self._loop = loop
        except BaseException as exc:  # handed to the starting thread, which raises it
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._wrap(handler, authenticate=True))
        # Anything else gets the provider's own 404, and is recorded like any request, so a
        # wrong upstream URL in the gateway shows up in `requests` rather than as a mystery.
        app.router.add_route("*", "/{tail:.*}", self._wrap(self._not_found, authenticate=False))
        return app

    async def _not_found(self, call: Call) -> JsonReply:
        path = call.request.path
        return self.error(404, f"Invalid URL ({call.request.method} {path})")

    # --- per-request pipeline --------------------------------------------------------------

    def _wrap(
        self, handler: Handler, authenticate: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def respond(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = None
            self._record(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.query),
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )
            fault = self._take_fault()
            call = Call(request, body, fault, self)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.close_without_response:
                return _hang_up(request, web.Response())
            if fault.status is not None:
                result: JsonReply | SSEReply = self._status_fault(fault)
            else:
                rejected = self.authenticate(call) if authenticate else None
                result = rejected or await handler(call)
            if isinstance(result, SSEReply):
                return await _write_stream(request, result, fault, self)
            return await _write_json(request, result, fault)

        return respond

    def _status_fault(self, fault: Fault) -> JsonReply:
        message = fault.message or f"Fake {self.name} error (HTTP {fault.status})."
        reply = self.error(fault.status or 500, message, fault.error_type)
        if fault.retry_after is not None:
            reply.headers["retry-after"] = _seconds(fault.retry_after)
        return reply


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _hang_up(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection. close(), not abort(): bytes already written still reach the
    client before the FIN, so a test knows exactly how many frames the client got. aiohttp
    then fails to finish `response` on the closing transport and drops it quietly."""
    if request.transport is not None:
        request.transport.close()
    return response


async def _write_json(request: web.Request, reply: JsonReply, fault: Fault) -> web.StreamResponse:
    body = orjson.dumps(reply.payload)
    headers = {"content-type": "application/json", **reply.headers}
    if reply.status >= 400:
        return web.Response(status=reply.status, body=body, headers=headers)
    if fault.malformed_after is not None:
        # A complete HTTP answer whose body is half a JSON document.
        return web.Response(status=reply.status, body=body[: len(body) // 2], headers=headers)
    if fault.break_after is None and not fault.chunk_delay:
        return web.Response(status=reply.status, body=body, headers=headers)
    # The headers promise the full length and half of it arrives; then the server hangs up
    # (break_after) or pauses for chunk_delay before the rest.
    response = web.StreamResponse(status=reply.status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if fault.break_after is not None:
        return _hang_up(request, response)
    await asyncio.sleep(fault.chunk_delay)
    await response.write(body[len(body) // 2 :])
    await response.write_eof()
    return response


def _encode(frame: Frame, line_end: str) -> bytes:
    head = f"event: {frame.event}{line_end}" if frame.event is not None else ""
    return f"{head}data: {frame.data}{line_end}{line_end}".encode()


async def _write_stream(
    request: web.Request, reply: SSEReply, fault: Fault, server: FakeServer
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={"content-type": reply.content_type, "cache-control": "no-cache", **reply.headers},
    )
    await response.prepare(request)
    frames = list(reply.frames)
    for index, item in enumerate(frames):
        if index and fault.chunk_delay:
            await asyncio.sleep(fault.chunk_delay)
        if index == fault.break_after:
            return _hang_up(request, response)
        if index == fault.malformed_after:
            # The frame that should come next, cut in half: never valid JSON.
            bad = Frame(item.data[: max(1, len(item.data) // 2)], item.event)
            await response.write(_encode(bad, reply.line_end))
            await response.write_eof()
            return response
        if index == fault.error_after:
            message = fault.message or f"Fake {server.name} error in the stream."
            error = server.stream_error(message, fault.error_type)
            await response.write(_encode(error, reply.line_end))
            await response.write_eof()
            return response
        await response.write(_encode(item, reply.line_end))
    if fault.break_after is not None and fault.break_after >= len(frames):
        return _hang_up(request, response)  # every frame sent, but no proper end of stream
    await response.write_eof()
    return response

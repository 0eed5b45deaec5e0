"""One usage event per client request, handed off the hot path at once.

Distributed mode appends events to a Redis stream (batched into one pipeline per flush) that a
Celery task moves into PostgreSQL; embedded mode hands them to an in-process batch writer.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings

from gateway import metrics
from gateway.schemas import Usage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageRecord:
    """Filled in as the request runs; emitted once, whatever the outcome."""

    request_id: str
    route: str
    started: float  # time.perf_counter()
    created_at: str
    tenant_id: int | None = None
    api_key_id: int | None = None
    application_id: int | None = None
    public_model: str = ""  # as the client asked
    served_model: str = ""  # the public model that answered (a rule, `auto` or a fallback)
    routing: str = ""  # why, when a rule or `auto` decided
    provider: str = ""
    upstream_model: str = ""
    stream: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None  # counted within output_tokens
    tokens_estimated: bool = False
    cost: Decimal | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_type: str = ""
    error_code: str = ""  # the error's code, e.g. budget_exceeded (for metrics; not stored)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    cache: str = ""  # hit | semantic-hit | miss | bypass; "" where no cache applied
    cache_saved: Decimal | None = None  # on a hit: what the answer cost when it was made
    guardrails: dict[str, Any] = field(default_factory=dict)  # gateway.guardrails.Report
    # Request metadata (gateway.metadata): from the x-waystation-* headers or the body.
    end_user: str = ""
    session_id: str = ""
    trace_id: str = ""
    tags: list[str] = field(default_factory=list)
    # A prompt API call (prompts/): api, prompt, version, experiment arm, and a chain's steps.
    prompt: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage
    bodies: Any = None  # gateway.call_log.Bodies: rendered and stored off the request path
    emitted: bool = False
    ticket: Any = None  # gateway.limits.Ticket: settled with the real tokens and cost at emit

    @classmethod
    def begin(cls, request_id: str, route: str) -> UsageRecord:
        return cls(request_id, route, time.perf_counter(), datetime.now(UTC).isoformat())

    def set_usage(self, usage: Usage, estimated: bool = False) -> None:
        self.input_tokens = usage.input_tokens
        self.output_tokens = usage.output_tokens
        self.cached_input_tokens = usage.cached_input_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        self.tokens_estimated = estimated

    def mark_first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    def as_row(self) -> dict[str, Any]:
        bodies, self.bodies = self.bodies, None  # asdict() would deep-copy the request
        try:
            row = asdict(self)
        finally:
            self.bodies = bodies
        del row["started"], row["emitted"], row["ticket"], row["bodies"]
        row["cost"] = str(self.cost) if self.cost is not None else None
        row["cache_saved"] = str(self.cache_saved) if self.cache_saved is not None else None
        return row


def emit(record: UsageRecord) -> None:
    """Hand the event off, once; later calls for the same record do nothing.

    Called before the last bytes go to the client, so a client that has its answer can rely
    on the event being on its way.
    """
    if record.emitted:
        return
    record.emitted = True
    record.latency_ms = (time.perf_counter() - record.started) * 1000
    record.timings["total_ms"] = round(record.latency_ms, 3)
    if record.ttft_ms is not None:
        record.timings["first_token_ms"] = round(record.ttft_ms, 3)
    if record.ticket is not None:
        tokens = (record.input_tokens or 0) + (record.output_tokens or 0)
        counted = record.input_tokens is not None or record.output_tokens is not None
        record.ticket.settle(tokens if counted else None, record.cost)
        record.ticket = None  # settled; and asdict() would copy it into the event
    metrics.observe(record)
    _sink().put(record.as_row(), record.bodies)


# --- sinks -----------------------------------------------------------------------

_sink_instance: Any = None


def _sink() -> Any:
    global _sink_instance
    if _sink_instance is None:
        _sink_instance = RedisStreamSink() if settings.DISTRIBUTED else EmbeddedSink()
    return _sink_instance


async def flush() -> None:
    """Push out what is buffered (at shutdown, and in tests)."""
    if _sink_instance is not None:
        await _sink_instance.flush()


class RedisStreamSink:
    """Appends events to the stream, one pipeline per flush, never on the request path.

    While Redis is away the events wait here: at most USAGE_BUFFER_MAX (past that the oldest
    are dropped, and the log says how many), retried by one flush loop with exponential
    backoff and jitter up to USAGE_RETRY_MAX_SECONDS. A write that fails midway is retried
    whole, so an event may reach the stream twice: the store is idempotent on request_id.
    Events still buffered when the process exits are lost (logged at shutdown).
    """

    CHUNK = 1000  # events per pipeline: a backlog goes out in pieces, each kept once written

    def __init__(self) -> None:
        from collections import deque

        # (the event, its call bodies or None): bodies are rendered when written, not here
        self._buffer: deque[tuple[bytes, Any]] = deque(maxlen=max(1, settings.USAGE_BUFFER_MAX))
        self._scheduled = False  # a flush is due or running: put() need not schedule one
        self._failures = 0  # consecutive failed writes
        self._dropped = 0  # events pushed out of the full buffer, not yet logged
        self._tasks: set[asyncio.Future[None]] = set()  # the loop holds tasks weakly
        self._clients: dict[int, Any] = {}

    def put(self, row: dict[str, Any], bodies: Any = None) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append((orjson.dumps(row), bodies))
        if not self._scheduled:
            self._schedule(settings.USAGE_FLUSH_SECONDS)

    def _schedule(self, delay: float) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        task = asyncio.ensure_future(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        """The scheduled flush: write, and while Redis fails, back off and write again."""
        try:
            while not await self._write():
                await asyncio.sleep(self._backoff())
        finally:
            self._scheduled = False
        if self._buffer:  # arrived while writing: the next flush window
            self._schedule(settings.USAGE_FLUSH_SECONDS)

    def _backoff(self) -> float:
        import random

        ceiling = min(settings.USAGE_RETRY_MAX_SECONDS, 0.1 * 2 ** min(self._failures, 20))
        return ceiling * random.uniform(0.5, 1.0)

    def _client(self) -> Any:
        import redis.asyncio as redis

        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            self._clients[loop_id] = redis.Redis.from_url(settings.REDIS_URL)
        return self._clients[loop_id]

    async def flush(self) -> None:
        """Write what is buffered now; if Redis fails, the events stay and a retry is due."""
        if not await self._write():
            if self._buffer:
                log.error("usage: %d events still buffered, Redis unreachable", len(self._buffer))
            if not self._scheduled:
                self._schedule(self._backoff())

    async def _write(self) -> bool:
        """Append the buffer to the stream; False, with the unwritten rest kept, on failure."""
        from collections import deque
        from itertools import chain

        batch, self._buffer = self._buffer, deque(maxlen=self._buffer.maxlen)
        chunk: list[tuple[bytes, Any]] = []
        written = 0
        try:
            while batch:
                chunk = [batch.popleft() for _ in range(min(self.CHUNK, len(batch)))]
                async with self._client().pipeline(transaction=False) as pipe:
                    for event, bodies in chunk:
                        pipe.xadd(settings.USAGE_STREAM_KEY, _entry(event, bodies))
                    await pipe.execute()
                written += len(chunk)
                chunk = []
        except BaseException as exc:
            # Back in front of what arrived meanwhile; a full buffer drops the oldest.
            batch.extendleft(reversed(chunk))
            keep = self._buffer.maxlen or 0
            self._dropped += max(0, len(batch) + len(self._buffer) - keep)
            self._buffer = deque(chain(batch, self._buffer), maxlen=keep)
            if not isinstance(exc, Exception):
                raise  # cancelled: the events are kept all the same
            self._failures += 1
            log.warning(
                "usage: could not append to the stream (attempt %d, %d events buffered): %r",
                self._failures,
                len(self._buffer),
                exc,
            )
            self._log_dropped()
            return False
        if self._failures:
            log.warning(
                "usage: stream writable again after %d failed attempts; appended %d events",
                self._failures,
                written,
            )
            self._failures = 0
        self._log_dropped()
        return True

    def _log_dropped(self) -> None:
        if self._dropped:
            log.error(
                "usage: dropped %d events, the buffer (USAGE_BUFFER_MAX=%d) was full",
                self._dropped,
                self._buffer.maxlen,
            )
            self._dropped = 0


def _entry(event: bytes, bodies: Any) -> dict[str, bytes]:
    """A stream entry: the event, and its call bodies compressed (b, b_size, b_cut)."""
    fields = {"e": event}
    encoded = _encoded_bodies(bodies)
    if encoded is not None:
        fields["b"], size, cut = encoded
        fields["b_size"], fields["b_cut"] = str(size).encode(), b"1" if cut else b"0"
    return fields


def _with_bodies(row: dict[str, Any], bodies: Any) -> dict[str, Any]:
    encoded = _encoded_bodies(bodies)
    if encoded is not None:
        row["body"] = encoded
    return row


def _encoded_bodies(bodies: Any) -> tuple[bytes, int, bool] | None:
    if bodies is None:
        return None
    from gateway import call_log

    try:
        return call_log.encode(bodies)
    except Exception:  # a body that cannot be rendered must not cost the event
        log.exception("usage: could not encode a call's bodies; the event is kept without")
        return None


class EmbeddedSink:
    """A writer thread that stores batches; the request never waits for the database."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[dict[str, Any], Any]] = queue.Queue()
        threading.Thread(target=self._run, name="usage-writer", daemon=True).start()

    def put(self, row: dict[str, Any], bodies: Any = None) -> None:
        self._queue.put((row, bodies))

    async def flush(self) -> None:
        await asyncio.to_thread(self.wait_idle)

    def wait_idle(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        from billing.budget_alerts import sweep
        from billing.services import usage_store_batch

        while True:
            try:
                batch = [self._queue.get(timeout=1.0)]
            except queue.Empty:
                try:
                    sweep()  # budget thresholds crossed by the last events, once due
                except Exception:
                    log.exception("usage: budget alerts failed")
                continue
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                usage_store_batch(rows=[_with_bodies(row, bodies) for row, bodies in batch])
            except Exception:
                log.exception("usage: could not store %d events", len(batch))
            for _ in batch:
                self._queue.task_done()

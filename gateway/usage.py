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
    public_model: str = ""  # as the client asked
    served_model: str = ""  # the public model that answered (a rule, `auto` or a fallback)
    routing: str = ""  # why, when a rule or `auto` decided
    provider: str = ""
    upstream_model: str = ""
    stream: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    tokens_estimated: bool = False
    cost: Decimal | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_type: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    emitted: bool = False

    @classmethod
    def begin(cls, request_id: str, route: str) -> UsageRecord:
        return cls(request_id, route, time.perf_counter(), datetime.now(UTC).isoformat())

    def set_usage(self, usage: Usage, estimated: bool = False) -> None:
        self.input_tokens = usage.input_tokens
        self.output_tokens = usage.output_tokens
        self.cached_input_tokens = usage.cached_input_tokens
        self.tokens_estimated = estimated

    def mark_first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        del row["started"], row["emitted"]
        row["cost"] = str(self.cost) if self.cost is not None else None
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
    _sink().put(record.as_row())


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
    def __init__(self) -> None:
        self._buffer: list[bytes] = []
        self._scheduled = False
        self._clients: dict[int, Any] = {}

    def put(self, row: dict[str, Any]) -> None:
        self._buffer.append(orjson.dumps(row))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(
                settings.USAGE_FLUSH_SECONDS, lambda: asyncio.ensure_future(self.flush())
            )

    def _client(self) -> Any:
        import redis.asyncio as redis

        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            self._clients[loop_id] = redis.Redis.from_url(settings.REDIS_URL)
        return self._clients[loop_id]

    async def flush(self) -> None:
        self._scheduled = False
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                for event in batch:
                    pipe.xadd(settings.USAGE_STREAM_KEY, {"e": event})
                await pipe.execute()
        except Exception:
            # Keep them for the next flush rather than lose them while Redis is away.
            log.exception("usage: could not append %d events to the stream", len(batch))
            self._buffer[:0] = batch
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_later(
                    1.0, lambda: asyncio.ensure_future(self.flush())
                )


class EmbeddedSink:
    """A writer thread that stores batches; the request never waits for the database."""

    def __init__(self) -> None:
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._run, name="usage-writer", daemon=True).start()

    def put(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    async def flush(self) -> None:
        await asyncio.to_thread(self.wait_idle)

    def wait_idle(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        from billing.services import usage_store_batch

        while True:
            batch = [self._queue.get()]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                usage_store_batch(rows=batch)
            except Exception:
                log.exception("usage: could not store %d events", len(batch))
            for _ in batch:
                self._queue.task_done()

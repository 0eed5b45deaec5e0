"""The usage pipeline under faults: nothing lost, nothing counted twice.

Each test runs its own redis-server (AOF, fsync always) as stream and Celery broker, a real
Celery worker (and beat) in a subprocess, and ends with: the request ids sent are exactly the
ids stored, one row each, and the stream holds nothing more.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from billing.models import UsageEvent
from billing.usage_stream import GROUP
from tests.gateway.helpers import DEMO, apply_yaml, new_key

pytestmark = [
    pytest.mark.skipif(not settings.DISTRIBUTED, reason="needs REDIS_URL"),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server"),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
STREAM = "waystation:usage:faults"
_redis_url = ""  # this test's Redis, for failure messages
OUTAGE_SECONDS = 60  # PostgreSQL
REDIS_DOWN_SECONDS = 4


# --- the pieces: a Redis of our own, Celery workers, a gateway, a TCP proxy ---------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server that can crash (SIGKILL) and come back on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--logfile", str(self.dir / "redis.log"),
            ],
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                # A restart answers LOADING until the AOF is read back.
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start\n{_tail(self.dir / 'redis.log')}")
            time.sleep(0.05)

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    global _redis_url
    _redis_url = server.url
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def _db_url(port: int | None = None) -> str:
    db = settings.DATABASES["default"]
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{port or db['PORT']}/{db['NAME']}"


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "REDIS_URL": redis_url,
        "USAGE_STREAM_KEY": STREAM,
        "USAGE_RECLAIM_IDLE_MS": "1000",
        **extra,
    }


def start_worker(tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    """A Celery worker with its embedded beat, in a process group of its own."""
    command = [
        sys.executable, "-m", "celery", "-A", "waystation", "worker", "-B",
        "-c", "1", "-l", "warning", "-n", f"{name}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-s", str(tmp_path / f"{name}-beat"),
    ]  # fmt: skip
    return _spawn(command, env, tmp_path / f"{name}.log")


def start_gateway(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", "waystation.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return _spawn(command, env, tmp_path / "gateway.log"), f"http://127.0.0.1:{port}"


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class TcpProxy:
    """Forwards loopback TCP to `target`; cut() closes every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.refused = 0
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.up:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self.lock:
                self.open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self.lock:
            self.open.discard(s)
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            live = list(self.open)
        for s in live:
            self._drop(s)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closing = True
        self.cut()
        self.listener.close()


def _reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    s.close()


# --- helpers -------------------------------------------------------------------------------


def event(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "route": "chatcompletions",
        "created_at": "2026-01-01T00:00:00+00:00",
        "latency_ms": 1.0,
        "status": 200,
        "cost": "0.0000012",
        "input_tokens": 3,
    }


def append(client: redis.Redis, ids: list[str]) -> None:
    for start in range(0, len(ids), 1000):
        pipe = client.pipeline(transaction=False)
        for request_id in ids[start : start + 1000]:
            pipe.xadd(STREAM, {"e": orjson.dumps(event(request_id))})
        pipe.execute()


def stored() -> int:
    return UsageEvent.objects.count()


def pending(client: redis.Redis) -> int:
    return client.xpending(STREAM, GROUP)["pending"]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for(condition, timeout: float, what: str, logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p.name}\n{_tail(p)}" for p in logs)
            pytest.fail(f"no {what} within {timeout:.0f}s ({_state()}){tails}")
        time.sleep(0.1)


def _state() -> str:
    """Where the events are, for a failure message."""
    try:
        client = redis.Redis.from_url(_redis_url, socket_timeout=2)
        stream = f"xlen={client.xlen(STREAM)} pending={pending(client)}"
    except Exception as exc:
        stream = repr(exc)
    return f"stored={stored()} {stream}"


def assert_exactly_once(client: redis.Redis, sent: list[str]) -> None:
    stored_ids = list(UsageEvent.objects.values_list("request_id", flat=True))
    assert len(set(sent)) == len(sent)
    assert set(stored_ids) == set(sent)
    assert len(stored_ids) == len(sent)
    assert client.xlen(STREAM) == 0
    assert pending(client) == 0
    assert not client.exists(f"{STREAM}:dead")


def _drop_other_connections() -> None:
    """Backends a killed worker left must not hold the test database at teardown."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@contextmanager
def row_held(request_id: str):
    """Another transaction inserts `request_id` and holds it uncommitted until the block ends.

    A batch containing that id then waits on the row lock inside its INSERT: a batch caught
    mid-write, for as long as we like. The holder rolls back, so it stores nothing itself.
    """
    ready, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with transaction.atomic():
                UsageEvent.objects.create(
                    request_id=request_id,
                    route="holder",
                    created_at="2026-01-01T00:00:00+00:00",
                    latency_ms=0,
                    status=0,
                )
                ready.set()
                release.wait(120)
                transaction.set_rollback(True)
        except BaseException as exc:  # reported to the test
            errors.append(exc)
            ready.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(30) and not errors, errors
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def _inserts_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s",
            ['INSERT INTO "billing_usageevent"%'],
        )
        return cursor.fetchone()[0]


# --- 1. a worker killed with SIGKILL in the middle of a batch --------------------------------


def test_a_worker_killed_mid_batch_loses_nothing_and_stores_nothing_twice(tmp_path, redis_server):
    client = redis_server.client()
    sent = [f"kill-{i:05d}" for i in range(5000)]
    append(client, sent)
    env = _env(redis_server.url)
    logs = (tmp_path / "first.log", tmp_path / "second.log")

    with row_held(sent[2750]):
        first = start_worker(tmp_path, "first", env)
        try:
            wait_for(lambda: _inserts_waiting_on_a_lock() == 1, 60, "batch mid-write", logs)
            # Earlier batches are committed; this one is read, unacknowledged, half written.
            before_kill = stored()
            in_flight = pending(client)
            assert 0 < before_kill < len(sent) - in_flight
            assert in_flight > 0
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            stop(first)
    # The killed batch never committed; its entries stay pending on the dead consumer.
    assert stored() == before_kill
    assert pending(client) == in_flight

    second = start_worker(tmp_path, "second", env)
    try:
        wait_for(
            lambda: stored() == len(sent) and client.xlen(STREAM) == 0,
            60,
            "complete store after the kill",
            logs,
        )
    finally:
        stop(second)
        _drop_other_connections()
    assert_exactly_once(client, sent)
    assert client.xinfo_stream(STREAM)["entries-added"] == len(sent)


# --- 2. Redis crashes and comes back while the gateway keeps serving ------------------------


class Traffic:
    """Client threads calling the gateway in a loop; each call carries its own request id."""

    def __init__(self, base_url: str, key: str, threads: int = 4) -> None:
        self.base_url, self.key = base_url, key
        self.done: list[tuple[str, int, float, float]] = []  # id, status, started, ended
        self.errors: list[str] = []
        self.running = True
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as http:
            i = 0
            while self.running:
                request_id = f"gw-{n}-{i:05d}-{uuid.uuid4().hex[:6]}"
                i += 1
                started = time.monotonic()
                try:
                    response = http.post(
                        "/v1/chat/completions",
                        headers={"authorization": f"Bearer {self.key}", "x-request-id": request_id},
                        json={
                            "model": "demo-chat",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(f"{request_id}: {exc!r}")
                    continue
                if response.headers.get("x-request-id") != request_id:
                    self.errors.append(f"{request_id}: answered as {response.headers}")
                self.done.append((request_id, response.status_code, started, time.monotonic()))

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(70)


def test_a_redis_restart_loses_no_usage_events(tmp_path, redis_server):
    apply_yaml(DEMO)
    key = new_key()
    client = redis_server.client()
    env = _env(redis_server.url, USAGE_RETRY_MAX_SECONDS="1")
    logs = (tmp_path / "worker.log", tmp_path / "gateway.log", redis_server.dir / "redis.log")
    worker = start_worker(tmp_path, "worker", env)
    gateway, base_url = start_gateway(tmp_path, env)
    traffic = None
    try:

        def gateway_ready() -> bool:
            with suppress(httpx.HTTPError):
                headers = {"authorization": f"Bearer {key}"}
                return httpx.get(base_url + "/v1/models", headers=headers).status_code == 200
            return False

        wait_for(gateway_ready, 60, "gateway", logs)
        traffic = Traffic(base_url, key)
        wait_for(lambda: len(traffic.done) >= 20, 30, "traffic", logs)

        # A backlog the worker has not read yet, acknowledged by Redis just before the crash.
        backlog = [f"backlog-{i:05d}" for i in range(2000)]
        append(client, backlog)
        added = client.xinfo_stream(STREAM)["entries-added"]
        redis_server.crash()
        down_at = time.monotonic()
        # Requests keep arriving and being answered; their events can only wait in the gateway.
        # Down for a few seconds at least: several failed flushes, backoff and retries.
        wait_for(
            lambda: (
                time.monotonic() - down_at > REDIS_DOWN_SECONDS
                and sum(1 for *_, s, e in traffic.done if s > down_at) >= 12
            ),
            45,
            "answers while Redis is down",
            logs,
        )
        redis_server.start()
        up_at = time.monotonic()
        # The AOF (fsync always) gave back everything Redis had acknowledged.
        assert client.xinfo_stream(STREAM)["entries-added"] >= added
        answered = len(traffic.done)
        wait_for(lambda: len(traffic.done) >= answered + 20, 30, "traffic after restart", logs)
        traffic.stop()

        during = [r for r, _, s, e in traffic.done if s > down_at and e < up_at]
        sent = backlog + [r for r, *_ in traffic.done]
        wait_for(
            lambda: stored() == len(sent) and client.xlen(STREAM) == 0,
            60,
            "every event stored after the restart",
            logs,
        )
    finally:
        if traffic is not None:
            traffic.stop()
        stop(gateway)
        stop(worker)
        _drop_other_connections()
    assert not traffic.errors, traffic.errors[:5]
    assert len(during) >= 12  # events emitted while Redis was down: they were buffered
    assert_exactly_once(client, sent)
    # A write retried across the crash may append an event twice; the store keeps it once.
    assert client.xinfo_stream(STREAM)["entries-added"] >= len(sent)


# --- 3. PostgreSQL unreachable for a minute --------------------------------------------------


def test_postgres_unreachable_for_a_minute_events_wait_and_land_once(tmp_path, redis_server):
    client = redis_server.client()
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    env = _env(redis_server.url, DATABASE_URL=_db_url(proxy.port))
    logs = (tmp_path / "worker.log",)
    worker = start_worker(tmp_path, "worker", env)
    try:
        sent = [f"pg-before-{i:04d}" for i in range(300)]
        append(client, sent)
        wait_for(lambda: stored() == len(sent), 60, "events stored through the proxy", logs)

        proxy.cut()
        cut_at = time.monotonic()
        during: list[str] = []
        while time.monotonic() - cut_at < OUTAGE_SECONDS:
            batch = [f"pg-during-{len(during) + i:05d}" for i in range(40)]
            append(client, batch)
            during += batch
            # Nothing stored, so nothing acknowledged: every entry is still in the stream.
            assert stored() == len(sent)
            assert client.xlen(STREAM) == len(during)
            time.sleep(1)
        assert stored() == len(sent)
        assert client.xlen(STREAM) == len(during)
        assert proxy.refused > 0  # the worker kept trying
        assert 0 < pending(client) < len(during)  # read, not acknowledged; not read on and on
        assert worker.poll() is None

        proxy.restore()
        after = [f"pg-after-{i:04d}" for i in range(300)]
        append(client, after)
        sent += during + after
        wait_for(
            lambda: stored() == len(sent) and client.xlen(STREAM) == 0,
            60,
            "every event stored once the database is back",
            logs,
        )
        assert worker.poll() is None  # the same worker, never restarted
    finally:
        stop(worker)
        proxy.close()
        _drop_other_connections()
    assert_exactly_once(client, sent)
    assert client.xinfo_stream(STREAM)["entries-added"] == len(sent)

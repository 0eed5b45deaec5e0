"""Shared fixtures: a real gateway (uvicorn + Channels) on loopback, on the real databases."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid

import pytest

pytest_plugins = ["tests.fakes.fixtures", "tests.log_capture"]

# The fake providers and webhook receivers listen on loopback, which the outbound policy
# (gateway/outbound.py) refuses by default: allow it for the whole run, in this process and in
# the gateways it starts. tests/security/test_ssrf.py empties the list again.
LOOPBACK = "127.0.0.0/8,::1/128"
os.environ["OUTBOUND_ALLOWED_NETWORKS"] = os.environ.get("OUTBOUND_ALLOWED_NETWORKS") or LOOPBACK


@pytest.fixture(scope="session", autouse=True)
def outbound_loopback_allowed():
    """Settings may have been read before this file set the variable."""
    from django.conf import settings

    settings.OUTBOUND_ALLOWED_NETWORKS = settings.OUTBOUND_ALLOWED_NETWORKS or LOOPBACK


@pytest.fixture(scope="session")
def isolated_usage_stream():
    """A usage stream of this run's own, so runs and other users of the Redis db don't mix."""
    from django.conf import settings

    run = uuid.uuid4().hex[:8]
    settings.USAGE_STREAM_KEY = f"waystation:usage:test:{run}"
    settings.GATEWAY_CACHE_KEY_PREFIX = f"wsc-test-{run}"  # tenant ids repeat across runs
    yield
    if settings.DISTRIBUTED:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).delete(settings.USAGE_STREAM_KEY)


class GatewayServer:
    def __init__(self) -> None:
        import uvicorn

        from waystation.asgi import application

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(application, lifespan="on", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("gateway failed to start")
            threading.Event().wait(0.02)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def call(self, coro):
        """Run a coroutine on the gateway's own loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def gateway_server(django_db_setup, django_db_blocker, isolated_usage_stream):
    server = GatewayServer()
    yield server
    server.stop()
    with django_db_blocker.unblock():
        _drop_other_connections()


def _drop_other_connections() -> None:
    """The gateway's worker threads keep connections; the test database can't drop with them."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def gateway(gateway_server, transactional_db):
    """The running gateway, with per-process caches emptied for this test's data."""
    from django.conf import settings

    from gateway import auth, balance, breaker, catalog, limits, prompt_calls, shared, usage
    from gateway.cache import service as response_cache
    from gateway.context import service as context

    catalog.invalidate()
    auth._cache.clear()
    breaker._breakers = None  # fresh breakers: a test's failures must not open the next's
    shared.reset()
    limits._memory.values.clear()
    limits._memory.sets.clear()
    balance.in_flight.clear()
    balance.latency_ms.clear()
    response_cache.reset()
    context.forget()
    prompt_calls.forget()
    # Events of earlier tests must not land in this test's database.
    gateway_server.call(usage.flush())
    if settings.DISTRIBUTED:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        counters = [
            *client.keys("waystation:breakers:*"),
            *client.keys("waystation:rl:*"),
            *client.keys("waystation:budget:*"),
            *client.keys(f"{settings.GATEWAY_CACHE_KEY_PREFIX}:*"),
        ]
        client.delete(settings.USAGE_STREAM_KEY, shared.BALANCE_KEY, *counters)
    return gateway_server


@pytest.fixture
def stored_usage(gateway):
    """Flush the gateway's usage buffer, move events into the database, return them."""
    from django.conf import settings

    from billing import usage_stream
    from billing.models import UsageEvent
    from gateway import usage

    def collect():
        gateway.call(usage.flush())
        if settings.DISTRIBUTED:
            usage_stream.drain(reclaim_idle_ms=0)
        return list(UsageEvent.objects.order_by("created_at", "id"))

    return collect


def pytest_collection_modifyitems(items):
    # Keep stray proxies from hijacking loopback calls of the SDKs.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        os.environ.pop(name, None)


def pytest_terminal_summary(terminalreporter):
    from tests.security import tally

    if tally.counts:
        terminalreporter.section("security battery")
        for name, n in sorted(tally.counts.items()):
            terminalreporter.write_line(f"{name}: {n}")

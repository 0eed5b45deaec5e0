"""/readyz: ready, or 503 naming the failing checks; never a usage event."""

from __future__ import annotations

import httpx
import pytest
import redis

from billing.models import UsageEvent
from gateway import drain


@pytest.fixture
def draining():
    drain.reset()
    yield drain
    drain.reset()


def test_ready_process_answers_200_with_every_check_ok(gateway, draining):
    # When
    resp = httpx.get(gateway.base_url + "/readyz")

    # Then
    assert resp.status_code == 200
    expected = {"draining": "ok", "database": "ok", "redis": "ok", "usage_backlog": "ok"}
    assert resp.json() == {"status": "ready", "checks": expected}
    assert UsageEvent.objects.count() == 0


def test_draining_process_answers_503(gateway, draining):
    # Given: the shutdown began (no loop: the drain timer is not armed)
    drain.begin(seconds=60, loop=None)

    # When
    resp = httpx.get(gateway.base_url + "/readyz/")

    # Then
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["draining"] == "draining"
    assert body["checks"]["database"] == "ok"


def test_usage_backlog_over_the_bound_answers_503(gateway, draining, settings):
    # Given: one event waiting in the usage stream, and a bound of zero
    settings.READY_MAX_USAGE_BACKLOG = 0
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.xadd(settings.USAGE_STREAM_KEY, {b"e": b"{}"})

    # When
    resp = httpx.get(gateway.base_url + "/readyz")

    # Then
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["usage_backlog"] == "1 queued, 0 pending; the bound is 0"
    assert checks["redis"] == checks["database"] == checks["draining"] == "ok"
    client.delete(settings.USAGE_STREAM_KEY)


def test_post_is_refused_and_healthz_stays_alive_while_draining(gateway, draining):
    drain.begin(seconds=60, loop=None)

    assert httpx.post(gateway.base_url + "/readyz").status_code == 405
    assert httpx.get(gateway.base_url + "/healthz").json() == {"status": "ok"}

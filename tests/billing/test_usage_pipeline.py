"""Usage events: Redis stream -> Celery worker -> PostgreSQL, each stored exactly once."""

import os
import subprocess
import sys
import time

import openai
import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection

from billing import usage_stream
from billing.models import UsageEvent
from tests.gateway.helpers import DEMO, apply_yaml, new_key

pytestmark = [
    pytest.mark.skipif(not settings.DISTRIBUTED, reason="needs REDIS_URL"),
    pytest.mark.usefixtures("isolated_usage_stream"),
]


def row(request_id):
    return {
        "request_id": request_id,
        "route": "chat.completions",
        "created_at": "2026-01-01T00:00:00+00:00",
        "latency_ms": 1.0,
        "status": 200,
        "cost": "0.0000012",
        "input_tokens": 3,
    }


@pytest.mark.django_db(transaction=True)
def test_duplicate_and_redelivered_events_are_stored_once():
    client = redis.Redis.from_url(settings.REDIS_URL)
    for request_id in ("a", "b", "a"):
        client.xadd(settings.USAGE_STREAM_KEY, {"e": orjson.dumps(row(request_id))})

    assert usage_stream.drain(reclaim_idle_ms=0) == 3
    assert usage_stream.drain(reclaim_idle_ms=0) == 0
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == ["a", "b"]
    assert client.xlen(settings.USAGE_STREAM_KEY) == 0


@pytest.mark.django_db(transaction=True)
def test_entries_a_dead_consumer_left_pending_are_reclaimed():
    client = redis.Redis.from_url(settings.REDIS_URL)
    usage_stream.ensure_group(client)
    client.xadd(settings.USAGE_STREAM_KEY, {"e": orjson.dumps(row("orphan"))})
    # A consumer that read the entry and died before storing it.
    client.xreadgroup(usage_stream.GROUP, "dead-worker", {settings.USAGE_STREAM_KEY: ">"})

    usage_stream.drain(reclaim_idle_ms=60_000)
    assert not UsageEvent.objects.exists()
    usage_stream.drain(reclaim_idle_ms=0)
    assert UsageEvent.objects.get().request_id == "orphan"


def test_a_real_celery_worker_moves_gateway_usage_into_postgres(gateway):
    apply_yaml(DEMO)
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    ids = []
    for _ in range(3):
        raw = api.chat.completions.with_raw_response.create(
            model="demo-chat", messages=[{"role": "user", "content": "count me"}]
        )
        ids.append(raw.headers["x-request-id"])
    from gateway import usage

    gateway.call(usage.flush())
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "USAGE_STREAM_KEY": settings.USAGE_STREAM_KEY,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "waystation",
            "worker",
            "-B",
            "-c",
            "1",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "-s",
            "/tmp/celerybeat-test",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while UsageEvent.objects.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        connection.close()

    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == sorted(ids)

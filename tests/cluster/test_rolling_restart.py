"""Restarting gateway processes under load costs no request (gateway/drain.py, /readyz).

Real processes on the test database and Redis: nginx in front of two gateways (the session's
deploy/cluster, see conftest.py), and for the drain timeout one `python -m waystation.serve`.
The OpenAI fake streams one word per frame with a delay, so streams are always in flight
while the gateways are restarted one by one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import openai
import pytest
from django.conf import settings

from billing import usage_stream
from billing.models import UsageEvent
from portal.models import Tenant
from tests.cluster.conftest import nginx_available, settle
from tests.gateway.helpers import apply_yaml, new_key

pytestmark = pytest.mark.skipif(not settings.DISTRIBUTED, reason="needs REDIS_URL")

CLIENTS = 8
WORDS = 12  # per answer: at WORD_DELAY a stream takes about 0.6 s
WORD_DELAY = 0.05


@pytest.fixture
def model(transactional_db, isolated_usage_stream, openai_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - name: gpt
            price: {{input_per_mtok: 1, output_per_mtok: 2}}
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
    """)
    return "gpt"


def _env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    return {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "USAGE_STREAM_KEY": settings.USAGE_STREAM_KEY,
        "GATEWAY_CACHE_MODE": "off",
        "LOG_FORMAT": "plain",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


@dataclass
class Load:
    """CLIENTS threads streaming chat completions through nginx until stopped."""

    base_url: str
    key: str
    model: str
    done: list[tuple[str, str]] = field(default_factory=list)  # (prompt, text streamed)
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds_at_least: float, during) -> None:
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            during()
            time.sleep(max(0.0, seconds_at_least - (time.monotonic() - started)))
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=60)

    def _client(self, n: int) -> None:
        client = openai.OpenAI(
            base_url=self.base_url + "/v1", api_key=self.key, max_retries=0, timeout=30
        )
        i = 0
        while not self.stop.is_set():
            i += 1
            prompt = " ".join(f"c{n}r{i}w{w}" for w in range(WORDS))
            try:
                stream = client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                self.failed.append(f"{prompt[:12]}: {exc!r}")
            else:
                self.done.append((prompt, text))


def _stored_events(tenant: Tenant, expected: int) -> int:
    """Move the usage stream into the database until `expected` events are stored (or 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        usage_stream.drain(reclaim_idle_ms=0)
        count = UsageEvent.objects.filter(tenant_id=tenant.id, route="chat.completions").count()
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_rolling_restart_under_streaming_load_fails_no_request(cl, model, openai_fake):
    # Given: eight clients streaming through nginx, every word 50 ms apart
    if not nginx_available():
        pytest.skip("nginx is not installed (make nginx installs it)")
    openai_fake.fault(times=None, chunk_delay=WORD_DELAY)
    load = Load(cl.url, new_key(), model)
    settle()

    # When: each gateway is restarted in turn while the load runs
    def restart_each() -> None:
        time.sleep(1.0)
        for i in range(len(cl.gateway_urls)):
            cl.restart_gateway(i)
            time.sleep(0.5)

    load.run(seconds_at_least=3.0, during=restart_each)

    # Then: nothing failed, every answer is whole, and every request was billed
    assert load.failed == []
    assert len(load.done) > CLIENTS * 4
    broken = [(p, t) for p, t in load.done if t != f"echo: {p}"]
    assert broken == []
    tenant = Tenant.objects.get(slug="acme")
    assert _stored_events(tenant, len(load.done)) == len(load.done)
    for url in cl.gateway_urls:
        assert httpx.get(url + "/readyz").json()["status"] == "ready"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(port: int, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "waystation.serve", "--port", str(port)]
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [*command, "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **_env(**env)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def test_stream_running_past_the_drain_timeout_ends_with_an_error_event(model, openai_fake):
    # Given: one gateway draining for 1 s, and a stream that would take 20 s
    openai_fake.fault(times=None, chunk_delay=0.5)
    port = _free_port()
    proc = _serve(port, GATEWAY_DRAIN_SECONDS="1")
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=new_key(), max_retries=0, timeout=30
    )
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "word " * 40}], stream=True
        )
        received = [next(iter(stream))]

        # When: the process is told to stop
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                received.append(chunk)

        # Then: the stream ends with the restart error (not a reset), and the process exits
        assert "The gateway is restarting; retry the request." in str(caught.value.message)
        assert time.monotonic() - started < 5
        assert 1 < len(received) < 40
        # uvicorn re-raises the signal it handled once it has shut down gracefully
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tenant = Tenant.objects.get(slug="acme")
    assert _stored_events(tenant, 1) == 1
    event = UsageEvent.objects.get(tenant_id=tenant.id)
    assert (event.status, event.error_type) == (503, "overloaded")

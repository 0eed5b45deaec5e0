"""Rate limits, quotas and budgets enforced on the hot path, through the official SDK."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import openai
import pytest

from billing import controls
from billing.services import usage_store_batch
from gateway import limits
from portal import services
from portal.services.common import SYSTEM
from tests.gateway.helpers import another_gateway, apply_yaml

HELLO = [{"role": "user", "content": "one two three"}]


@pytest.fixture
def setup(gateway, openai_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - name: metered
            price: {{input_per_mtok: 10000, output_per_mtok: 10000}}   # a cent a token: budgets fill fast
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
          - {{name: other, deployments: [{{provider: oai, model: gpt-4o}}]}}
    """)
    tenant = services.tenant_get_or_create(slug="acme")
    app = services.application_create(actor=SYSTEM, tenant=tenant, name="web")
    created = services.api_key_create(tenant=tenant, name="ci", all_models=True, application=app)
    key = created.api_key
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=created.secret, max_retries=0)
    return client, tenant, app, key, created.secret


def settle(gateway):
    gateway.call(limits.flush())


def test_requests_per_minute_with_openai_headers(setup, stored_usage):
    client, tenant, _, key, _ = setup
    controls.rate_limit_set(actor=SYSTEM, tenant=tenant, api_key=key, requests_per_minute=3)

    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="metered", messages=HELLO)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="metered", messages=HELLO)

    assert remaining == ["2", "1", "0"]
    assert refused.value.code == "rate_limit_exceeded"
    assert "3 requests per minute" in refused.value.message and "key 'ci'" in refused.value.message
    assert 0 < int(refused.value.response.headers["retry-after"]) <= 20
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert [e.status for e in stored_usage()] == [200, 200, 200, 429]


def test_a_limit_on_one_model_leaves_the_others_alone(setup):
    client, tenant, app, _, _ = setup
    controls.rate_limit_set(
        actor=SYSTEM, tenant=tenant, application=app, model="metered", requests_per_minute=1
    )
    client.chat.completions.create(model="metered", messages=HELLO)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="metered", messages=HELLO)
    assert client.chat.completions.create(model="other", messages=HELLO).choices


def test_tokens_per_minute_are_estimated_then_corrected(setup, gateway):
    client, tenant, _, _, _ = setup
    controls.rate_limit_set(actor=SYSTEM, tenant=tenant, tokens_per_minute=100)

    # Estimated at about 3 + 80 tokens; the fake's answer uses far fewer, and the difference
    # is given back when the request ends, so a second such request fits in the minute.
    raw = client.chat.completions.with_raw_response.create(
        model="metered", messages=HELLO, max_tokens=80
    )
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 20
    settle(gateway)
    assert client.chat.completions.create(model="metered", messages=HELLO, max_tokens=80)

    with pytest.raises(openai.RateLimitError) as too_big:
        client.chat.completions.create(model="metered", messages=HELLO, max_tokens=500)
    assert too_big.value.code == "request_too_large"


def test_concurrent_requests(setup, gateway, openai_fake):
    client, tenant, _, key, _ = setup
    controls.rate_limit_set(actor=SYSTEM, tenant=tenant, api_key=key, concurrent=2)
    openai_fake.fault(times=None, delay=1.0)

    def call(_):
        try:
            client.chat.completions.create(model="metered", messages=HELLO)
            return "ok"
        except openai.RateLimitError:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(call, range(6)))
    openai_fake.clear()

    assert sorted(outcomes) == ["ok", "ok"] + ["refused"] * 4
    assert len(openai_fake.requests) == 2
    settle(gateway)
    assert client.chat.completions.create(model="metered", messages=HELLO)  # slots released


def test_a_hard_budget_blocks_with_budget_exceeded(setup, gateway, stored_usage):
    client, tenant, app, _, _ = setup
    controls.budget_set(actor=SYSTEM, tenant=tenant, application=app, amount_usd=Decimal("0.5"))

    statuses = []
    for _ in range(10):
        try:
            client.chat.completions.create(model="metered", messages=HELLO, max_tokens=20)
            statuses.append(200)
        except openai.RateLimitError as refused:
            statuses.append(refused.code)
            message = refused.message
            break
        settle(gateway)

    events = stored_usage()
    spent = sum(e.cost for e in events if e.status == 200)
    one_request = max(e.cost for e in events if e.status == 200)
    assert statuses[-1] == "budget_exceeded" and 200 in statuses
    assert "monthly budget of application 'web' ($0.50)" in message
    assert Decimal("0.5") <= spent <= Decimal("0.5") + one_request


def test_concurrent_streams_overshoot_by_at_most_one_request(setup, openai_fake, stored_usage):
    client, tenant, _, key, _ = setup
    controls.budget_set(actor=SYSTEM, tenant=tenant, api_key=key, amount_usd=Decimal("1"))
    openai_fake.fault(times=None, chunk_delay=0.05)

    def stream(_):
        try:
            chunks = client.chat.completions.create(
                model="metered", messages=HELLO, stream=True, max_tokens=20
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except openai.RateLimitError:
            return None

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(stream, range(20)))
    openai_fake.clear()

    events = stored_usage()
    served = [e for e in events if e.status == 200]
    assert any(a is None for a in answers) and served  # some admitted, then blocked
    # Each admitted stream reserved its estimate, so the budget holds within one request.
    assert sum(e.cost for e in served) <= Decimal("1") + max(e.cost for e in served)


def test_a_budget_counter_is_seeded_from_the_database(setup, gateway):
    client, tenant, _, key, _ = setup
    usage_store_batch(
        rows=[
            {
                "request_id": str(uuid.uuid4()),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tenant_id": tenant.pk,
                "api_key_id": key.pk,
                "route": "chat",
                "public_model": "metered",
                "cost": "2.5",
                "latency_ms": 1.0,
                "status": 200,
            }
        ]
    )
    controls.budget_set(actor=SYSTEM, tenant=tenant, amount_usd=Decimal("2"), period="daily")

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="metered", messages=HELLO)
    assert refused.value.code == "budget_exceeded"
    assert "daily budget of tenant 'acme'" in refused.value.message


def test_redis_away_fails_open_on_per_process_limits_or_closed(setup, gateway, settings, caplog):
    client, tenant, _, key, _ = setup
    controls.rate_limit_set(actor=SYSTEM, tenant=tenant, api_key=key, requests_per_minute=2)
    unreachable = limits.RedisCounters("redis://127.0.0.1:1/0")
    saved, limits._redis = limits._redis, unreachable
    limits._memory.values.clear()
    try:
        assert client.chat.completions.create(model="metered", messages=HELLO)
        assert client.chat.completions.create(model="metered", messages=HELLO)
        with pytest.raises(openai.RateLimitError):  # still limited, per process
            client.chat.completions.create(model="metered", messages=HELLO)
        assert "Redis unreachable" in caplog.text

        settings.GATEWAY_LIMITS_FAIL_OPEN = False
        with pytest.raises(openai.APIStatusError) as closed:
            client.chat.completions.create(model="metered", messages=HELLO)
        assert closed.value.status_code == 503
    finally:
        limits._redis = saved


def test_limits_hold_under_200_concurrent_requests_over_two_processes(setup, gateway, settings):
    if not settings.DISTRIBUTED:
        pytest.skip("two processes share limits through Redis")
    client, tenant, _, key, secret = setup
    controls.rate_limit_set(actor=SYSTEM, tenant=tenant, api_key=key, requests_per_minute=60)
    body = {"model": "metered", "messages": HELLO}

    async def burst(bases: list[str]) -> tuple[list[int], float]:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = {"authorization": f"Bearer {secret}"}
            started = time.monotonic()
            calls = [
                http.post(bases[i % 2] + "/v1/chat/completions", json=body, headers=headers)
                for i in range(200)
            ]
            responses = await asyncio.gather(*calls)
            return [r.status_code for r in responses], time.monotonic() - started

    with another_gateway() as other:
        statuses, elapsed = asyncio.run(burst([gateway.base_url, other]))

    admitted = statuses.count(200)
    # 60 at once, plus one per second of the burst that the window refilled.
    assert 60 <= admitted <= 60 + int(elapsed) + 1
    assert set(statuses) == {200, 429}

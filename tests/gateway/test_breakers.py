"""Circuit breakers: open after failures, skip, probe once after the cooldown, shared by processes."""

import time

import httpx
import openai
import pytest
from django.conf import settings as django_settings

from tests.gateway.helpers import another_gateway, apply_yaml, new_key

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def setup(gateway, openai_fake, anthropic_fake, settings):
    settings.GATEWAY_BREAKER_FAILURES = 3
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 1.0
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: ant, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
        models:
          - name: guarded
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
          - name: spread
            deployments: [{{provider: oai, model: gpt-4o-mini}}, {{provider: ant, model: claude-haiku-4-5}}]
    """)
    key = new_key()
    return key, openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def open_the_breaker(client, openai_fake):
    openai_fake.fault(times=3, status=500)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="guarded", messages=HELLO)
    assert len(openai_fake.requests) == 3


def test_open_breaker_skips_the_deployment_then_one_probe_closes_it(setup, openai_fake):
    _, client = setup
    open_the_breaker(client, openai_fake)

    with pytest.raises(openai.APIStatusError) as cooling:
        client.chat.completions.create(model="guarded", messages=HELLO)
    assert cooling.value.status_code == 503
    assert len(openai_fake.requests) == 3  # not sent upstream

    time.sleep(1.1)
    assert client.chat.completions.create(model="guarded", messages=HELLO).choices
    assert client.chat.completions.create(model="guarded", messages=HELLO).choices
    assert len(openai_fake.requests) == 5


def test_traffic_moves_to_the_healthy_deployment(setup, openai_fake, anthropic_fake):
    _, client = setup
    open_the_breaker(client, openai_fake)

    for _ in range(4):
        assert client.chat.completions.create(model="spread", messages=HELLO).choices
    assert len(openai_fake.requests) == 3 and len(anthropic_fake.requests) == 4


def test_a_failed_probe_opens_it_again(setup, openai_fake):
    _, client = setup
    open_the_breaker(client, openai_fake)
    time.sleep(1.1)
    openai_fake.fault(status=500)

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="guarded", messages=HELLO)
    with pytest.raises(openai.APIStatusError) as cooling:
        client.chat.completions.create(model="guarded", messages=HELLO)
    assert cooling.value.status_code == 503 and len(openai_fake.requests) == 4


@pytest.mark.skipif(not django_settings.DISTRIBUTED, reason="needs REDIS_URL")
def test_a_breaker_opened_by_one_process_is_honoured_by_another(setup, openai_fake, settings):
    key, client = setup
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 30  # outlasts the second process's start
    open_the_breaker(client, openai_fake)
    with another_gateway(GATEWAY_BREAKER_COOLDOWN_SECONDS="30") as other:
        resp = httpx.post(
            other + "/v1/chat/completions",
            timeout=10,
            headers={"authorization": f"Bearer {key}"},
            json={"model": "guarded", "messages": HELLO},
        )
    assert resp.status_code == 503
    assert len(openai_fake.requests) == 3

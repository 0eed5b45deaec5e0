"""Upstream failures: the right status, an error in the route's format, and a usage event."""

import time

import anthropic
import httpx
import openai
import pytest

from tests.gateway.helpers import apply_yaml, new_key

HELLO = [{"role": "user", "content": "one two three four five six"}]


@pytest.fixture
def setup(gateway, openai_fake, anthropic_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: oai-slow, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: oai-badkey, kind: openai, base_url: "{openai_fake.base_url}", api_key: "wrong"}}
          - {{name: ant, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
          - {{name: dead, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: "x"}}
        models:
          - {{name: m-openai, price: {{input_per_mtok: 1, output_per_mtok: 2}}, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
          - {{name: m-slow, deployments: [{{provider: oai-slow, model: gpt-4o-mini}}]}}
          - {{name: m-badkey, deployments: [{{provider: oai-badkey, model: gpt-4o-mini}}]}}
          - {{name: m-anthropic, deployments: [{{provider: ant, model: claude-haiku-4-5}}]}}
          - {{name: m-dead, deployments: [{{provider: dead, model: x}}]}}
          - name: m-pair
            deployments: [{{provider: dead, model: x}}, {{provider: oai, model: gpt-4o-mini}}]
    """)
    key = new_key()
    return (
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0),
        anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0),
    )


def test_upstream_429_passes_through_with_retry_after(setup, openai_fake, stored_usage):
    client, _ = setup
    openai_fake.fault(status=429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as failure:
        client.chat.completions.create(model="m-openai", messages=HELLO)

    assert failure.value.response.headers["retry-after"] == "7"
    [event] = stored_usage()
    assert (event.status, event.error_type, event.provider) == (429, "rate_limit", "")


def test_upstream_500_becomes_502_in_anthropic_format(setup, anthropic_fake):
    _, claude = setup
    anthropic_fake.fault(status=500)

    with pytest.raises(anthropic.APIStatusError) as failure:
        claude.messages.create(model="m-anthropic", max_tokens=10, messages=HELLO)

    assert failure.value.status_code == 502
    assert failure.value.body["type"] == "error"


def test_upstream_rejecting_our_credentials_is_502_not_401(setup):
    client, _ = setup
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="m-badkey", messages=HELLO)
    assert failure.value.status_code == 502


def test_unreachable_upstream_is_502_and_the_next_deployment_answers(setup, stored_usage):
    client, _ = setup
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="m-dead", messages=HELLO)
    assert failure.value.status_code == 502

    for _ in range(4):
        answer = client.chat.completions.create(model="m-pair", messages=HELLO)
        assert answer.choices[0].message.content.startswith("echo:")
    statuses = [e.status for e in stored_usage()]
    assert statuses == [502, 200, 200, 200, 200]


@pytest.mark.parametrize("fault", [{"break_after": 3}, {"malformed_after": 3}, {"error_after": 3}])
def test_broken_stream_ends_with_an_error_the_sdk_raises(setup, openai_fake, stored_usage, fault):
    client, _ = setup
    # Paced like a real upstream, so the first frames arrive before the break.
    openai_fake.fault(chunk_delay=0.02, **fault)
    seen = []

    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="m-openai", messages=HELLO, stream=True):
            seen.extend(c.delta.content or "" for c in chunk.choices)

    assert "".join(seen).startswith("echo:")
    [event] = stored_usage()
    assert event.status == 502 and event.error_type == "upstream_error"
    assert event.output_tokens > 0 and event.tokens_estimated


def test_broken_stream_raises_in_the_anthropic_sdk_too(setup, anthropic_fake):
    _, claude = setup
    anthropic_fake.fault(break_after=4, chunk_delay=0.02)

    with pytest.raises(anthropic.APIStatusError):
        with claude.messages.stream(model="m-anthropic", max_tokens=50, messages=HELLO) as stream:
            "".join(stream.text_stream)


def test_stream_without_usage_is_counted_with_the_tokenizer(setup, openai_fake, stored_usage):
    client, _ = setup
    openai_fake.fault(omit_usage=True)

    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m-openai", messages=HELLO, stream=True)
        if c.choices
    )

    [event] = stored_usage()
    assert text == "echo: one two three four five six"
    assert event.tokens_estimated
    assert event.output_tokens == 8  # o200k: "echo", ":", and six words
    assert event.input_tokens > 6 and event.cost is not None


def test_client_disconnect_mid_stream_cancels_upstream_and_is_recorded(
    gateway, setup, openai_fake, stored_usage
):
    client, _ = setup
    openai_fake.fault(chunk_delay=0.3)
    key = client.api_key
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json={"model": "m-openai", "messages": HELLO, "stream": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    ) as resp:
        next(resp.iter_raw())
    time.sleep(0.5)

    [event] = stored_usage()
    assert (event.status, event.error_type) == (499, "client_disconnected")

"""Retries with backoff, Retry-After, and fallbacks across providers, counted attempt by attempt."""

import anthropic
import openai
import pytest

from tests.gateway.helpers import apply_yaml, new_key

HELLO = [{"role": "user", "content": "one two"}]


@pytest.fixture
def clients(gateway, openai_fake, anthropic_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: ant, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
        models:
          - name: sturdy
            retries: 2
            price: {{input_per_mtok: 1, output_per_mtok: 1}}
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
            fallbacks: [claude-backup]
          - name: picky
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
            fallbacks: [claude-backup]
            fallback_on: [context_length]
          - name: claude-backup
            price: {{input_per_mtok: 3, output_per_mtok: 15}}
            deployments: [{{provider: ant, model: claude-haiku-4-5}}]
    """)
    key = new_key()
    return (
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0),
        anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0),
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("status", [500, 503, 429])
def test_retryable_failures_are_retried_on_the_same_model(
    clients, openai_fake, stored_usage, status, stream
):
    client, _ = clients
    openai_fake.fault(times=2, status=status, retry_after=0.05 if status == 429 else None)

    raw = client.chat.completions.with_raw_response.create(
        model="sturdy", messages=HELLO, stream=stream
    )
    text = _text(raw.parse(), stream)

    assert text == "echo: one two"
    assert raw.headers["x-waystation-attempts"] == "3"
    assert len(openai_fake.requests) == 3
    [event] = stored_usage()
    assert [a["outcome"] for a in event.attempts] == [_kind(status), _kind(status), "ok"]


def test_exhausted_retries_fall_back_to_another_provider_billed_at_its_price(
    clients, openai_fake, anthropic_fake, stored_usage
):
    client, _ = clients
    openai_fake.fault(times=3, status=502)

    raw = client.chat.completions.with_raw_response.create(model="sturdy", messages=HELLO)

    assert raw.parse().choices[0].message.content == "echo: one two"
    assert raw.headers["x-waystation-provider"] == "ant"
    assert raw.headers["x-waystation-attempts"] == "4"
    assert len(openai_fake.requests) == 3 and len(anthropic_fake.requests) == 1
    [event] = stored_usage()
    assert [(a["model"], a["outcome"]) for a in event.attempts][-1] == ("claude-backup", "ok")
    assert event.public_model == "sturdy" and event.provider == "ant"
    assert event.cost == (event.input_tokens * 3 + event.output_tokens * 15) / __import__(
        "decimal"
    ).Decimal(1_000_000)


def test_client_errors_are_not_retried_nor_fall_back(clients, openai_fake, anthropic_fake):
    client, _ = clients
    openai_fake.fault(status=400)

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sturdy", messages=HELLO)
    assert len(openai_fake.requests) == 1 and not anthropic_fake.requests


def test_fallback_only_on_the_configured_reasons(clients, openai_fake, anthropic_fake):
    client, _ = clients
    openai_fake.fault(status=500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="picky", messages=HELLO)
    assert not anthropic_fake.requests

    openai_fake.fault(
        status=400,
        error_type="context_length_exceeded",
        message="This model's maximum context length is 8 tokens.",
    )
    answer = client.chat.completions.create(model="picky", messages=HELLO)
    assert answer.choices[0].message.content == "echo: one two"
    assert len(anthropic_fake.requests) == 1


def test_long_retry_after_is_not_waited_for(clients, openai_fake, anthropic_fake):
    client, _ = clients
    openai_fake.fault(status=429, retry_after=60)

    answer = client.chat.completions.create(model="sturdy", messages=HELLO)

    assert answer.choices[0].message.content == "echo: one two"
    assert len(openai_fake.requests) == 1 and len(anthropic_fake.requests) == 1


def test_anthropic_clients_get_fallbacks_too(clients, openai_fake):
    _, claude = clients
    openai_fake.fault(times=3, status=503)

    message = claude.messages.create(model="sturdy", max_tokens=20, messages=HELLO)

    assert message.content[0].text == "echo: one two"


def _text(parsed, stream):
    if not stream:
        return parsed.choices[0].message.content
    return "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)


def _kind(status):
    return {500: "upstream_error", 503: "overloaded", 429: "rate_limit"}[status]


def test_the_retry_budget_stops_retries_from_multiplying_load():
    from gateway.router import RetryBudget

    budget = RetryBudget(ratio=0.2, floor_per_second=0.0, cap=3.0)
    assert [budget.withdraw() for _ in range(4)] == [True, True, True, False]
    for _ in range(5):  # five requests earn one retry
        budget.deposit()
    assert budget.withdraw() and not budget.withdraw()

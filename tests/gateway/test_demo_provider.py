"""The built-in demo provider through the real gateway, driven by the official SDKs."""

from decimal import Decimal

import openai
import pytest

from tests.gateway.helpers import DEMO, apply_yaml, new_key


@pytest.fixture
def client(gateway):
    apply_yaml(DEMO)
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)


def test_chat_completion_answers_and_records_one_usage_event(client, stored_usage):
    reply = client.chat.completions.with_raw_response.create(
        model="demo-chat", messages=[{"role": "user", "content": "Hello there"}]
    )
    completion = reply.parse()

    assert completion.choices[0].message.content.endswith("You said: Hello there")
    assert completion.model == "demo-chat"
    assert reply.headers["x-waystation-provider"] == "demo"
    assert reply.headers["x-waystation-model"] == "demo-chat"
    [event] = stored_usage()
    assert event.request_id == reply.headers["x-request-id"]
    assert event.status == 200
    assert event.input_tokens == completion.usage.prompt_tokens
    assert event.output_tokens == completion.usage.completion_tokens
    expected = (Decimal(event.input_tokens) * 1 + Decimal(event.output_tokens) * 2) / 1_000_000
    assert event.cost == expected
    assert Decimal(reply.headers["x-waystation-cost"]) == expected


def test_stream_yields_the_same_text_in_chunks(client):
    stream = client.chat.completions.create(
        model="demo-chat",
        messages=[{"role": "user", "content": "Stream this"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert text.endswith("You said: Stream this")
    assert len([c for c in chunks if c.choices]) > 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_are_deterministic_and_sized(client):
    first = client.embeddings.create(model="demo-embed", input=["a", "b"], dimensions=8)
    again = client.embeddings.create(model="demo-embed", input="a", dimensions=8)

    assert len(first.data) == 2 and len(first.data[0].embedding) == 8
    assert again.data[0].embedding == pytest.approx(first.data[0].embedding, rel=1e-6)
    assert first.data[0].embedding != first.data[1].embedding


def test_models_lists_what_the_key_may_use(client):
    assert sorted(m.id for m in client.models.list()) == ["demo-chat", "demo-embed"]
    assert client.models.retrieve("demo-chat").id == "demo-chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")

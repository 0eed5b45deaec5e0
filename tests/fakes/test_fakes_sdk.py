"""Self-tests with the official SDKs: if the SDKs parse what the fakes send, the fakes
speak the real wire protocol closely enough for the gateway's tests to mean something."""

from __future__ import annotations

import json
import math
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fakes.control import Reply, ToolCallSpec

WEATHER = ToolCallSpec("get_weather", '{"city": "Paris", "unit": "celsius", "days": [1, 2]}')
MESSAGES: Any = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]


@pytest.fixture
def oai(openai_fake: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_fake.base_url, api_key=openai_fake.api_key, max_retries=0)


@pytest.fixture
def claude(anthropic_fake: Any) -> anthropic.Anthropic:
    key = anthropic_fake.api_key
    return anthropic.Anthropic(base_url=anthropic_fake.base_url, api_key=key, max_retries=0)


# --- OpenAI --------------------------------------------------------------------------------


def test_openai_chat(oai: openai.OpenAI, openai_fake: Any) -> None:
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.choices[0].message.content == "echo: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 3)
    assert openai_fake.last_request.json["messages"] == MESSAGES


def test_openai_stream_reassembles_tool_calls(oai: openai.OpenAI, openai_fake: Any) -> None:
    second = ToolCallSpec("get_time", '{"zone": "Europe/Paris"}', id="call_custom")
    openai_fake.script(Reply(text="let me check", tool_calls=[WEATHER, second]))
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, calls, finish, usage, chunks = "", {}, None, None, 0
    for chunk in stream:
        chunks += 1
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert chunks > 10 and text == "let me check" and finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and calls[0]["id"] == "call_fake_0"
    assert json.loads(calls[0]["arguments"]) == json.loads(WEATHER.arguments)
    assert calls[1]["id"] == "call_custom" and json.loads(calls[1]["arguments"])["zone"]
    assert usage.completion_tokens == 3 + 7 + 2


def test_openai_n_choices(oai: openai.OpenAI) -> None:
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert result.usage.completion_tokens == 9


def test_openai_embeddings(oai: openai.OpenAI, openai_fake: Any) -> None:
    inputs = ["alpha beta", "gamma"]
    result = oai.embeddings.create(model="text-embedding-3-small", input=inputs, dimensions=64)
    assert openai_fake.last_request.json["encoding_format"] == "base64"  # the SDK's default
    vectors = [item.embedding for item in result.data]
    assert [len(v) for v in vectors] == [64, 64] and vectors[0] != vectors[1]
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == 3
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input="alpha beta", dimensions=64, encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(vectors[0], rel=1e-5)


def test_openai_models(oai: openai.OpenAI) -> None:
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_status_faults(
    oai: openai.OpenAI, openai_fake: Any, status: int, error: type
) -> None:
    openai_fake.fault(status=status)
    with pytest.raises(error) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == status


def test_openai_wrong_key(openai_fake: Any) -> None:
    client = openai.OpenAI(base_url=openai_fake.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"


def test_openai_stream_faults_raise(oai: openai.OpenAI, openai_fake: Any) -> None:
    for fault in ({"break_after": 2}, {"malformed_after": 2}, {"error_after": 2}):
        openai_fake.fault(**fault)
        stream = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each fault raises differently
            list(stream)
        if "break_after" in fault:
            assert isinstance(caught.value, openai.APIConnectionError)


def test_openai_connection_faults(openai_fake: Any) -> None:
    client = openai.OpenAI(
        base_url=openai_fake.base_url, api_key=openai_fake.api_key, max_retries=0, timeout=0.2
    )
    openai_fake.fault(close_without_response=True)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    openai_fake.fault(delay=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


# --- Azure OpenAI --------------------------------------------------------------------------


def test_azure_chat_stream_and_embeddings(azure_fake: Any) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=azure_fake.base_url,
        api_key=azure_fake.api_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    result = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert result.choices[0].message.content == "echo: hello there"
    request = azure_fake.last_request
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == azure_fake.api_key
    azure_fake.script(Reply(tool_calls=[WEATHER]))
    stream = client.chat.completions.create(model="my-deployment", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results  # Azure's opening chunk
    arguments = "".join(
        d.function.arguments or ""
        for c in chunks
        for ch in c.choices
        for d in ch.delta.tool_calls or []
    )
    assert json.loads(arguments) == json.loads(WEATHER.arguments)
    vectors = client.embeddings.create(model="my-embeddings", input="x", dimensions=8)
    assert len(vectors.data[0].embedding) == 8


def test_azure_errors(azure_fake: Any) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=azure_fake.base_url, api_key="wrong", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="d", messages=MESSAGES)
    azure_fake.fault(status=429, retry_after=2)
    good = client.with_options(api_key=azure_fake.api_key)
    with pytest.raises(openai.RateLimitError) as caught:
        good.chat.completions.create(model="d", messages=MESSAGES)
    assert caught.value.response.headers["retry-after-ms"] == "2000"
    assert caught.value.body == {"code": "429", "message": "Fake azure error (HTTP 429)."}


# --- Anthropic -----------------------------------------------------------------------------


def test_anthropic_message(claude: anthropic.Anthropic, anthropic_fake: Any) -> None:
    result = claude.messages.create(
        model="claude-x",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert result.content[0].text == "echo: hello there" and result.stop_reason == "end_turn"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (4, 3)
    headers = anthropic_fake.last_request.headers
    assert headers["authorization"] == f"Bearer {anthropic_fake.api_key}"  # SDK 2.x's choice
    assert headers["anthropic-version"]


def test_anthropic_stream_tool_use(claude: anthropic.Anthropic, anthropic_fake: Any) -> None:
    anthropic_fake.script(Reply(text="checking now", tool_calls=[WEATHER]))
    request: Any = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with claude.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "checking now"
    assert final.content[1].type == "tool_use" and final.content[1].input == json.loads(
        WEATHER.arguments
    )
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 2 + 7
    raw = claude.messages.create(**request, stream=True)
    types = [event.type for event in raw]
    assert types[:2] == ["message_start", "content_block_start"]  # the SDK drops pings
    assert types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, anthropic.AuthenticationError),
        (429, anthropic.RateLimitError),
        (529, anthropic.OverloadedError),
    ],
)
def test_anthropic_status_faults(
    claude: anthropic.Anthropic, anthropic_fake: Any, status: int, error: type
) -> None:
    anthropic_fake.fault(status=status, retry_after=1)
    with pytest.raises(error) as caught:
        claude.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert caught.value.body["type"] == "error"


def test_anthropic_stream_faults_raise(claude: anthropic.Anthropic, anthropic_fake: Any) -> None:
    request: Any = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "a b"}]}
    anthropic_fake.fault(break_after=3)
    # Unlike openai's, the anthropic SDK lets the transport's error through unwrapped.
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        list(claude.messages.create(**request, stream=True))
    anthropic_fake.fault(error_after=3, message="too busy")
    with pytest.raises(anthropic.APIStatusError, match="too busy"):
        list(claude.messages.create(**request, stream=True))

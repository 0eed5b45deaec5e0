"""The OpenAI -> OpenAI stream relay: frames forwarded, model renamed, usage observed."""

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.providers.openai.passthrough import OpenAIPassthrough

UPSTREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","model": "gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'
    b"data: [DONE]\n\n"
)


def relay_all(data: bytes, step: int, include_usage: bool) -> tuple[OpenAIPassthrough, list[dict]]:
    relay = OpenAIPassthrough("req1", "public-model", include_usage)
    out = b"".join(relay.feed(data[i : i + step]) for i in range(0, len(data), step))
    out += relay.close()
    frames = [f[6:] for f in out.split(b"\n\n") if f]
    assert frames[-1] == b"[DONE]"
    return relay, [orjson.loads(f) for f in frames[:-1]]


@pytest.mark.parametrize("step", [len(UPSTREAM), 1, 7], ids=["whole", "1-byte", "7-byte"])
def test_frames_are_forwarded_with_the_public_model(step):
    relay, chunks = relay_all(UPSTREAM, step, include_usage=True)

    assert [c["model"] for c in chunks] == ["public-model"] * 4
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == "Hello"
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert (relay.usage.input_tokens, relay.usage.output_tokens) == (9, 2)
    assert relay.produced_text() == "Hello" and relay.first_token_seen


def test_usage_chunk_is_dropped_when_the_client_did_not_ask():
    relay, chunks = relay_all(UPSTREAM, 50, include_usage=False)

    assert all(c["choices"] for c in chunks)
    assert relay.usage.output_tokens == 2  # still observed for billing


@pytest.mark.parametrize("step", [1, 2, 13])
def test_crlf_framing_is_understood(step):
    relay, chunks = relay_all(UPSTREAM.replace(b"\n", b"\r\n"), step, include_usage=True)
    assert len(chunks) == 4


@pytest.mark.parametrize(
    "bad",
    [b"data: {not json\n\n", b'data: {"error": {"message": "overloaded"}}\n\n', b"data: [1]\n\n"],
    ids=["malformed", "error-frame", "not-an-object"],
)
def test_bad_frames_raise(bad):
    relay = OpenAIPassthrough("req1", "m", False)
    relay.feed(UPSTREAM[:200])
    with pytest.raises(GatewayError):
        relay.feed(bad)


def test_a_stream_without_done_is_incomplete():
    relay = OpenAIPassthrough("req1", "m", False)
    relay.feed(UPSTREAM[: UPSTREAM.index(b"data: [DONE]")])
    with pytest.raises(GatewayError, match="ended before"):
        relay.close()

"""The Anthropic wire-protocol module: upstream adapter and `/v1/messages` client codec."""

# ruff: noqa: E501  (literal SSE transcripts and wire JSON read best unwrapped)

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest

from gateway.errors import GatewayError
from gateway.providers.anthropic import (
    AnthropicAdapter,
    AnthropicMessagesCodec,
)
from gateway.providers.sse import SSEDecoder
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    Choice,
    Credentials,
    EmbeddingRequest,
    Finish,
    ImagePart,
    Message,
    ResponseFormat,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    Usage,
    UsageReport,
)

CREDS = Credentials(
    base_url="https://api.anthropic.com", api_key="sk-ant-test", upstream_model="claude-x"
)


def user(text: str) -> Message:
    return Message(role="user", content=(TextPart(text),))


def body_of(req: ChatRequest, creds: Credentials = CREDS) -> dict:
    return orjson.loads(AnthropicAdapter().build_chat_request(req, creds).body)


# --- upstream request ----------------------------------------------------------------


def test_build_request_url_headers_and_defaults():
    up = AnthropicAdapter().build_chat_request(ChatRequest("m", (user("hi"),)), CREDS)
    assert up.method == "POST"
    assert up.url == "https://api.anthropic.com/v1/messages"
    assert up.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-test",
    }
    assert orjson.loads(up.body) == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


@pytest.mark.parametrize(
    "base",
    [
        "https://api.anthropic.com",
        "https://api.anthropic.com/",
        "https://api.anthropic.com/v1",
        "https://api.anthropic.com/v1/",
    ],
)
def test_build_request_tolerates_v1_suffix(base):
    creds = Credentials(base_url=base, api_key=None, upstream_model="claude-x")
    up = AnthropicAdapter().build_chat_request(ChatRequest("m", (user("hi"),)), creds)
    assert up.url == "https://api.anthropic.com/v1/messages"
    assert "x-api-key" not in up.headers


def test_build_request_translates_a_whole_conversation():
    req = ChatRequest(
        model="public",
        messages=(
            Message(role="system", content=(TextPart("Be brief."),)),
            user("What is the weather in Paris and Oslo?"),
            Message(role="system", content=(TextPart("Use metric units."),)),
            Message(
                role="assistant",
                content=(TextPart("Checking."),),
                tool_calls=(
                    ToolCall("call_1", "weather", '{"city": "Paris"}'),
                    ToolCall("call_2", "weather", '{"city": "Os'),  # cut off: invalid JSON
                ),
            ),
            Message(role="tool", content=(TextPart("18C"),), tool_call_id="call_1"),
            Message(role="tool", content=(TextPart("boom"),), tool_call_id="call_2", is_error=True),
            user("And this picture?"),
            Message(
                role="user",
                content=(
                    ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                    ImagePart(url="https://example.com/cat.jpg", detail="high"),
                    TextPart(""),
                ),
            ),
        ),
        stream=True,
        max_tokens=300,
        temperature=1.7,
        top_p=0.9,
        stop=("END", "STOP"),
        user="user-42",
        seed=7,
        metadata={"ignored": "yes"},
        extra={"top_k": 5, "logprobs": True},
    )
    assert body_of(req) == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the weather in Paris and Oslo?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": "boom",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And this picture?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                ],
            },
        ],
        "stream": True,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "user-42"},
        "top_k": 5,
    }


def test_build_request_merges_consecutive_turns_and_puts_tool_results_first():
    req = ChatRequest(
        "m",
        (
            user("a"),
            user("b"),
            Message(role="assistant", tool_calls=(ToolCall("t1", "f", ""),)),
            user("late text"),
            Message(
                role="tool",
                content=(TextPart("see"), ImagePart(url="https://x.test/i.png")),
                tool_call_id="t1",
            ),
            Message(role="assistant", content=(TextPart("x"),)),
            Message(role="assistant", content=(TextPart("y"),)),
        ),
    )
    assert body_of(req)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [
                        {"type": "text", "text": "see"},
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
                    ],
                },
                {"type": "text", "text": "late text"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
        },
    ]


def test_build_request_tools():
    tools = (
        Tool(
            "weather",
            "Get the weather",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        ),
        Tool("now"),
    )
    body = body_of(ChatRequest("m", (user("hi"),), tools=tools))
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Get the weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"type": "auto"}),
        (ToolChoice("none"), {"type": "none"}),
        (ToolChoice("required"), {"type": "any"}),
        (ToolChoice("tool", name="now"), {"type": "tool", "name": "now"}),
        (ToolChoice("auto", parallel=False), {"type": "auto", "disable_parallel_tool_use": True}),
        (
            ToolChoice("tool", name="now", parallel=False),
            {"type": "tool", "name": "now", "disable_parallel_tool_use": True},
        ),
        (ToolChoice("required", parallel=True), {"type": "any"}),
        (ToolChoice("none", parallel=False), {"type": "none"}),
    ],
)
def test_build_request_tool_choice(choice, expected):
    req = ChatRequest("m", (user("hi"),), tools=(Tool("now"),), tool_choice=choice)
    assert body_of(req)["tool_choice"] == expected


def test_build_request_tool_choice_without_tools_is_dropped():
    req = ChatRequest("m", (user("hi"),), tool_choice=ToolChoice("required"))
    assert "tool_choice" not in body_of(req)


def test_build_request_response_format_becomes_system_instruction():
    fmt = ResponseFormat("json_schema", schema={"type": "object", "required": ["a"]}, name="thing")
    req = ChatRequest(
        "m", (Message(role="system", content=(TextPart("Sys."),)), user("hi")), response_format=fmt
    )
    assert body_of(req)["system"] == (
        "Sys.\n\nRespond with a single valid JSON value (named 'thing') that conforms to this "
        "JSON Schema, and nothing else: no prose, no Markdown code fences.\n"
        '{"required":["a"],"type":"object"}'
    )
    req = ChatRequest("m", (user("hi"),), response_format=ResponseFormat("json_object"))
    assert body_of(req)["system"] == (
        "Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences."
    )
    req = ChatRequest("m", (user("hi"),), response_format=ResponseFormat("text"))
    assert "system" not in body_of(req)


def test_build_request_clamps_negative_temperature():
    assert body_of(ChatRequest("m", (user("hi"),), temperature=-0.5))["temperature"] == 0.0
    assert body_of(ChatRequest("m", (user("hi"),), temperature=0.3))["temperature"] == 0.3


def test_build_request_rejects_n_above_one():
    with pytest.raises(GatewayError) as exc:
        AnthropicAdapter().build_chat_request(ChatRequest("m", (user("hi"),), n=2), CREDS)
    assert exc.value.kind == "invalid_request"
    assert exc.value.status == 400
    assert exc.value.param == "n"


def test_build_request_rejects_images_in_system():
    req = ChatRequest(
        "m", (Message(role="system", content=(ImagePart(url="https://x.test/a.png"),)), user("hi"))
    )
    with pytest.raises(GatewayError) as exc:
        AnthropicAdapter().build_chat_request(req, CREDS)
    assert exc.value.kind == "invalid_request"


def test_embeddings_are_not_offered():
    adapter = AnthropicAdapter()
    with pytest.raises(GatewayError) as exc:
        adapter.build_embedding_request(EmbeddingRequest("m", ("x",)), CREDS)
    assert (exc.value.kind, exc.value.status) == ("invalid_request", 400)
    assert "does not offer embeddings" in exc.value.message
    with pytest.raises(GatewayError):
        adapter.parse_embedding_response(b"{}")


# --- upstream response ---------------------------------------------------------------

RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "toolu_01A",
            "name": "weather",
            "input": {"city": "Paris", "days": 2},
        },
        {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "output_tokens": 40,
    },
}


def test_parse_chat_response():
    resp = AnthropicAdapter().parse_chat_response(orjson.dumps(RESPONSE))
    assert resp.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert resp.model == "claude-sonnet-4-5-20250929"
    assert resp.created > 0
    assert resp.choices == (
        Choice(
            0,
            Message(
                role="assistant",
                content=(TextPart("Let me check."),),
                tool_calls=(
                    ToolCall("toolu_01A", "weather", '{"city":"Paris","days":2}'),
                    ToolCall("toolu_01B", "now", "{}"),
                ),
            ),
            "tool_calls",
        ),
    )
    assert resp.usage == Usage(input_tokens=2112, output_tokens=40, cached_input_tokens=2000)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
    ],
)
def test_parse_chat_response_stop_reasons(stop_reason, finish):
    data = {
        "id": "msg_1",
        "model": "c",
        "content": [],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    resp = AnthropicAdapter().parse_chat_response(orjson.dumps(data))
    assert resp.choices[0].finish_reason == finish
    assert resp.usage == Usage(input_tokens=3, output_tokens=1, cached_input_tokens=None)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": "x"}'])
def test_parse_chat_response_rejects_malformed_bodies(body):
    with pytest.raises(GatewayError) as exc:
        AnthropicAdapter().parse_chat_response(body)
    assert exc.value.kind == "upstream_error"


# --- upstream stream -----------------------------------------------------------------

# A real Anthropic stream (text, then two tool_use blocks, one without parameters), verbatim.
TRANSCRIPT = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":128,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather à Paris:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"Paris, FR\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

""".encode()

TRANSCRIPT_EVENTS = [
    StreamStart("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-sonnet-4-5-20250929"),
    TextDelta("Okay, let's check"),
    TextDelta(" the weather \u00e0 Paris:"),
    ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
    ToolCallDelta(0, '{"location":'),
    ToolCallDelta(0, ' "Paris, FR"}'),
    ToolCallStart(1, "toolu_02", "get_time"),
    ToolCallDelta(1, "{}"),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=600, output_tokens=89, cached_input_tokens=128)),
]


def parse_stream(data: bytes, size: int | None) -> list:
    parser = AnthropicAdapter().new_stream_parser()
    events = []
    if size is None:
        events.extend(parser.feed(data))
    else:
        for i in range(0, len(data), size):
            events.extend(parser.feed(data[i : i + size]))
    events.extend(parser.close())
    return events


@pytest.mark.parametrize("size", [None, 1, 7])
def test_stream_parser_transcript(size):
    assert parse_stream(TRANSCRIPT, size) == TRANSCRIPT_EVENTS


def test_stream_parser_crlf_transcript():
    assert parse_stream(TRANSCRIPT.replace(b"\n", b"\r\n"), 5) == TRANSCRIPT_EVENTS


def test_stream_parser_takes_cumulative_usage_from_message_delta():
    data = TRANSCRIPT.replace(
        b'"usage":{"output_tokens":89}', b'"usage":{"input_tokens":500,"output_tokens":90}'
    )
    assert parse_stream(data, None)[-1] == UsageReport(
        Usage(input_tokens=628, output_tokens=90, cached_input_tokens=128)
    )


def test_stream_parser_ignores_frames_after_message_stop():
    assert (
        parse_stream(
            TRANSCRIPT + b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n',
            None,
        )
        == TRANSCRIPT_EVENTS
    )


@pytest.mark.parametrize("cut", [0, 200, TRANSCRIPT.index(b"event: message_stop")])
def test_stream_parser_raises_when_the_stream_ends_early(cut):
    parser = AnthropicAdapter().new_stream_parser()
    parser.feed(TRANSCRIPT[:cut])
    with pytest.raises(GatewayError) as exc:
        parser.close()
    assert exc.value.kind == "upstream_error"
    assert exc.value.status == 502


@pytest.mark.parametrize(
    ("error_type", "kind", "retryable"),
    [
        ("overloaded_error", "overloaded", True),
        ("rate_limit_error", "rate_limit", True),
        ("api_error", "upstream_error", True),
        ("invalid_request_error", "invalid_request", False),
        ("mystery_error", "upstream_error", False),
    ],
)
def test_stream_parser_raises_on_error_event(error_type, kind, retryable):
    head = TRANSCRIPT[: TRANSCRIPT.index(b"event: content_block_stop")]
    error = b'event: error\ndata: {"type": "error", "error": {"type": "%s", "message": "Overloaded"}}\n\n'
    parser = AnthropicAdapter().new_stream_parser()
    assert len(parser.feed(head)) == 3
    with pytest.raises(GatewayError) as exc:
        parser.feed(error % error_type.encode())
    assert (exc.value.kind, exc.value.message, exc.value.retryable) == (
        kind,
        "Overloaded",
        retryable,
    )


def test_stream_parser_rejects_malformed_frame():
    parser = AnthropicAdapter().new_stream_parser()
    with pytest.raises(GatewayError) as exc:
        parser.feed(b"event: message_start\ndata: {nope\n\n")
    assert exc.value.kind == "upstream_error"


# --- upstream errors -----------------------------------------------------------------


def error_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def test_parse_error_rate_limit_with_retry_after():
    err = AnthropicAdapter().parse_error(
        429, {"retry-after": "12"}, error_body("rate_limit_error", "Slow down")
    )
    assert (err.kind, err.status, err.message, err.retryable, err.retry_after) == (
        "rate_limit",
        429,
        "Slow down",
        True,
        12.0,
    )


def test_parse_error_overloaded_529():
    err = AnthropicAdapter().parse_error(529, {}, error_body("overloaded_error", "Overloaded"))
    assert (err.kind, err.status, err.message, err.retryable) == (
        "overloaded",
        503,
        "Overloaded",
        True,
    )


def test_parse_error_bad_request():
    err = AnthropicAdapter().parse_error(
        400, {}, error_body("invalid_request_error", "max_tokens: Field required")
    )
    assert (err.kind, err.status, err.message, err.retryable) == (
        "invalid_request",
        400,
        "max_tokens: Field required",
        False,
    )


def test_parse_error_context_too_long():
    err = AnthropicAdapter().parse_error(
        400,
        {},
        error_body("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
    )
    assert (err.kind, err.code) == ("context_length_exceeded", "context_length_exceeded")


def test_parse_error_too_large_and_auth_and_garbage():
    adapter = AnthropicAdapter()
    err = adapter.parse_error(
        413, {}, error_body("request_too_large", "Request exceeds the maximum size")
    )
    assert (err.kind, err.status) == ("payload_too_large", 413)
    err = adapter.parse_error(401, {}, error_body("authentication_error", "invalid x-api-key"))
    assert (err.kind, err.status) == ("upstream_error", 502)
    assert "invalid x-api-key" in err.message
    err = adapter.parse_error(500, {}, b"<html>oops</html>")
    assert (err.kind, err.status, err.retryable) == ("upstream_error", 502, True)


# --- client codec: requests ----------------------------------------------------------


def test_codec_parses_a_full_request():
    body = {
        "model": "claude-public",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Also this:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "failed"},
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "https://x.test/e.png"},
                            },
                        ],
                    },
                ],
            },
        ],
        "tools": [
            {"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert AnthropicMessagesCodec().parse_request(body) == ChatRequest(
        model="claude-public",
        messages=(
            Message(role="system", content=(TextPart("Be brief."),)),
            user("Weather in Paris?"),
            Message(
                role="assistant",
                content=(TextPart("Checking."),),
                tool_calls=(ToolCall("toolu_1", "weather", '{"city":"Paris"}'),),
            ),
            Message(role="tool", content=(TextPart("18C"),), tool_call_id="toolu_1"),
            Message(
                role="tool",
                content=(TextPart("failed"), ImagePart(url="https://x.test/e.png")),
                tool_call_id="toolu_2",
                is_error=True,
            ),
            Message(
                role="user",
                content=(TextPart("Also this:"), ImagePart(data="/9j/", media_type="image/jpeg")),
            ),
        ),
        stream=True,
        max_tokens=1024,
        temperature=0.5,
        top_p=0.9,
        stop=("\n\nHuman:",),
        user="u-1",
        tools=(Tool("weather", "Weather", {"type": "object"}),),
        tool_choice=ToolChoice("required", parallel=False),
        extra={"top_k": 40},
    )


def test_codec_parses_minimal_request_and_tool_choices():
    codec = AnthropicMessagesCodec()
    base = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    req = codec.parse_request({**base, "system": "S"})
    assert req.messages == (Message(role="system", content=(TextPart("S"),)), user("hi"))
    assert (req.stream, req.tool_choice, req.extra, req.user) == (False, None, {}, None)
    choices = {
        "auto": ToolChoice("auto"),
        "none": ToolChoice("none"),
        "tool": ToolChoice("tool", name="f"),
    }
    for kind, expected in choices.items():
        assert (
            codec.parse_request({**base, "tool_choice": {"type": kind, "name": "f"}}).tool_choice
            == expected
        )
    only_results = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
    assert codec.parse_request({**base, "messages": [only_results]}).messages == (
        Message(role="tool", tool_call_id="t"),
    )


BASE = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def msg(content, role="user"):
    return {**BASE, "messages": [{"role": role, "content": content}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], "body"),
        ({**BASE, "model": None}, "model"),
        ({**BASE, "model": 3}, "model"),
        ({**BASE, "model": ""}, "model"),
        ({k: v for k, v in BASE.items() if k != "max_tokens"}, "max_tokens"),
        ({**BASE, "max_tokens": 0}, "max_tokens"),
        ({**BASE, "max_tokens": "10"}, "max_tokens"),
        ({**BASE, "max_tokens": True}, "max_tokens"),
        ({**BASE, "max_tokens": 1.5}, "max_tokens"),
        ({**BASE, "messages": []}, "messages"),
        ({**BASE, "messages": None}, "messages"),
        ({**BASE, "messages": {"role": "user"}}, "messages"),
        ({**BASE, "messages": ["hi"]}, "messages[0]"),
        ({**BASE, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({**BASE, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({**BASE, "messages": [{"role": "user"}]}, "messages[0].content"),
        (msg(42), "messages[0].content"),
        (msg([{"type": "text"}]), "messages[0].content[0].text"),
        (msg([{"type": "text", "text": 1}]), "messages[0].content[0].text"),
        (msg([{"type": "audio"}]), "messages[0].content[0].type"),
        (msg(["plain"]), "messages[0].content[0]"),
        (
            msg([{"type": "image", "source": {"type": "file"}}]),
            "messages[0].content[0].source.type",
        ),
        (
            msg([{"type": "image", "source": {"type": "base64", "data": "x"}}]),
            "messages[0].content[0].source.media_type",
        ),
        (
            msg([{"type": "image", "source": {"type": "url", "url": "ftp://x"}}]),
            "messages[0].content[0].source.url",
        ),
        (
            msg([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
            "messages[0].content[0]",
        ),
        (
            msg([{"type": "tool_result", "tool_use_id": "t"}], role="assistant"),
            "messages[0].content[0]",
        ),
        (
            msg([{"type": "tool_use", "name": "f", "input": {}}], role="assistant"),
            "messages[0].content[0].id",
        ),
        (
            msg([{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}], role="assistant"),
            "messages[0].content[0].input",
        ),
        (msg([{"type": "tool_result"}]), "messages[0].content[0].tool_use_id"),
        (
            msg([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]),
            "messages[0].content[0].is_error",
        ),
        (
            msg([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_use"}]}]),
            "messages[0].content[0].content[0].type",
        ),
        ({**BASE, "system": 5}, "system"),
        ({**BASE, "system": [{"type": "image"}]}, "system[0].type"),
        ({**BASE, "tools": {}}, "tools"),
        ({**BASE, "tools": [{"input_schema": {}}]}, "tools[0].name"),
        ({**BASE, "tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({**BASE, "tools": [{"name": "f", "input_schema": []}]}, "tools[0].input_schema"),
        (
            {**BASE, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
        ),
        ({**BASE, "tool_choice": "auto"}, "tool_choice"),
        ({**BASE, "tool_choice": {"type": "required"}}, "tool_choice.type"),
        ({**BASE, "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (
            {**BASE, "tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}},
            "tool_choice.disable_parallel_tool_use",
        ),
        ({**BASE, "stop_sequences": "END"}, "stop_sequences"),
        ({**BASE, "stop_sequences": [1]}, "stop_sequences[0]"),
        ({**BASE, "temperature": 1.5}, "temperature"),
        ({**BASE, "temperature": "hot"}, "temperature"),
        ({**BASE, "top_p": -0.1}, "top_p"),
        ({**BASE, "top_k": -1}, "top_k"),
        ({**BASE, "metadata": "u"}, "metadata"),
        ({**BASE, "metadata": {"user_id": 7}}, "metadata.user_id"),
        ({**BASE, "stream": "true"}, "stream"),
    ],
)
def test_codec_rejects_bad_requests(body, param):
    with pytest.raises(GatewayError) as exc:
        AnthropicMessagesCodec().parse_request(body)
    assert exc.value.kind == "invalid_request"
    assert exc.value.status == 400
    assert exc.value.param == param
    assert param in exc.value.message or param == "body"


def test_codec_parses_what_the_anthropic_sdk_sends():
    """The official SDK's own request body (captured off a mock transport) is accepted."""
    sent = []

    def handler(request):
        sent.append(orjson.loads(request.content))
        return httpx2.Response(200, json={**RESPONSE, "content": [{"type": "text", "text": "ok"}]})

    client = sdk_client(handler)
    client.messages.create(
        model="claude-public",
        max_tokens=64,
        system="Sys",
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}],
            },
        ],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto"},
        metadata={"user_id": "u"},
    )
    req = AnthropicMessagesCodec().parse_request(sent[0])
    assert req.model == "claude-public"
    assert req.messages == (
        Message(role="system", content=(TextPart("Sys"),)),
        user("hi"),
        Message(role="assistant", tool_calls=(ToolCall("t1", "f", '{"a":1}'),)),
        Message(role="tool", content=(TextPart("done"),), tool_call_id="t1"),
    )
    assert (req.user, req.tool_choice, req.tools) == (
        "u",
        ToolChoice("auto"),
        (Tool("f", None, {"type": "object"}),),
    )


# --- client codec: responses, streams, errors ----------------------------------------


def sdk_client(handler) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


CHAT_RESPONSE = ChatResponse(
    id="chatcmpl-abc",
    model="gpt-4o-2024-08-06",
    choices=(
        Choice(
            0,
            Message(
                role="assistant",
                content=(TextPart("Sure."), TextPart("")),
                tool_calls=(
                    ToolCall("call_1", "weather", '{"city":"Paris"}'),
                    ToolCall("call_2", "now", ""),
                ),
            ),
            "tool_calls",
        ),
        Choice(1, Message(role="assistant", content=(TextPart("ignored"),)), "stop"),
    ),
    usage=Usage(input_tokens=120, output_tokens=30, cached_input_tokens=100),
)


def test_codec_renders_response():
    assert AnthropicMessagesCodec().render_response(CHAT_RESPONSE, "claude-public") == {
        "id": "msg_chatcmpl-abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-public",
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 100},
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_codec_renders_stop_reasons_and_keeps_msg_ids(finish, stop_reason):
    resp = ChatResponse("msg_1", "x", (Choice(0, Message(role="assistant"), finish),))
    out = AnthropicMessagesCodec().render_response(resp, "p")
    assert (out["id"], out["stop_reason"], out["content"]) == ("msg_1", stop_reason, [])
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0}


def test_rendered_response_is_read_by_the_anthropic_sdk():
    rendered = AnthropicMessagesCodec().render_response(CHAT_RESPONSE, "claude-public")
    message = sdk_client(lambda request: httpx2.Response(200, json=rendered)).messages.create(
        model="claude-public", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.id == "msg_chatcmpl-abc"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 30)


# Internal events as an OpenAI upstream yields them: usage arrives after the finish.
OPENAI_STYLE_EVENTS = [
    StreamStart("chatcmpl-up", "gpt-4o"),
    TextDelta(""),
    TextDelta("Let me "),
    TextDelta("check.", choice=1),
    TextDelta("check."),
    ToolCallStart(0, "call_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallStart(1, "call_b", "now"),
    ToolCallDelta(1, "{}"),
    Finish("tool_calls"),
    Finish("stop", choice=1),
    UsageReport(Usage(input_tokens=50, output_tokens=12, cached_input_tokens=10)),
]


def encode(events, request_id="req1") -> bytes:
    encoder = AnthropicMessagesCodec().new_stream_encoder(
        ChatRequest("m", (user("hi"),)), request_id, "claude-public"
    )
    assert encoder.content_type == "text/event-stream"
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def sse_events(data: bytes) -> list[tuple[str, dict]]:
    decoder = SSEDecoder()
    frames = decoder.feed(data) + decoder.close()
    out = []
    for f in frames:
        payload = orjson.loads(f.data)
        assert payload["type"] == f.event
        out.append((f.event, payload))
    return out


def test_stream_encoder_exact_sequence():
    events = sse_events(encode(OPENAI_STYLE_EVENTS))
    assert [payload for _, payload in events] == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_req1",
                "type": "message",
                "role": "assistant",
                "model": "claude-public",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "check."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_b", "name": "now", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 12, "input_tokens": 40, "cache_read_input_tokens": 10},
        },
        {"type": "message_stop"},
    ]
    tool_json = "".join(
        p["delta"]["partial_json"]
        for _, p in events
        if p["type"] == "content_block_delta" and p["index"] == 1
    )
    assert orjson.loads(tool_json) == {"city": "Paris"}


def test_stream_encoder_output_accumulated_by_the_anthropic_sdk():
    body = encode(OPENAI_STYLE_EVENTS)

    def handler(request):
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with sdk_client(handler).messages.stream(
        model="claude-public", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert stream.get_final_text() == "Let me check."
        final = stream.get_final_message()
    assert final.id == "msg_req1"
    assert final.model == "claude-public"
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("text", None),
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {}),
    ]
    assert [b.id for b in final.content[1:]] == ["call_a", "call_b"]
    assert final.stop_reason == "tool_use"
    assert (
        final.usage.input_tokens,
        final.usage.output_tokens,
        final.usage.cache_read_input_tokens,
    ) == (40, 12, 10)


def test_stream_encoder_round_trips_an_anthropic_upstream_stream():
    """Anthropic upstream -> internal events -> Anthropic client: usage comes before finish()."""
    events = sse_events(encode(TRANSCRIPT_EVENTS, request_id="msg_x"))
    kinds = [kind for kind, _ in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["id"] == "msg_x"
    assert events[-2][1]["usage"] == {
        "output_tokens": 89,
        "input_tokens": 472,
        "cache_read_input_tokens": 128,
    }


def test_stream_encoder_without_usage_or_finish_still_closes_properly():
    events = sse_events(encode([TextDelta("hi")]))
    assert [p for _, p in events][1:] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 0, "cache_read_input_tokens": 0},
        },
        {"type": "message_stop"},
    ]
    assert [k for k, _ in sse_events(encode([]))] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]


def test_stream_encoder_emits_message_delta_at_finish_when_usage_came_first():
    encoder = AnthropicMessagesCodec().new_stream_encoder(ChatRequest("m", (user("hi"),)), "r", "p")
    encoder.encode(StreamStart("x", "y"))
    encoder.encode(UsageReport(Usage(input_tokens=3, output_tokens=4)))
    out = sse_events(encoder.encode(Finish("length")))
    assert out == [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": 4, "input_tokens": 3, "cache_read_input_tokens": 0},
            },
        )
    ]
    assert sse_events(encoder.finish()) == [("message_stop", {"type": "message_stop"})]


@pytest.mark.parametrize(
    ("kind", "anthropic_type"),
    [
        ("invalid_request", "invalid_request_error"),
        ("authentication", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "not_found_error"),
        ("payload_too_large", "request_too_large"),
        ("rate_limit", "rate_limit_error"),
        ("context_length_exceeded", "invalid_request_error"),
        ("content_filter", "invalid_request_error"),
        ("upstream_error", "api_error"),
        ("upstream_timeout", "timeout_error"),
        ("overloaded", "overloaded_error"),
        ("internal", "api_error"),
    ],
)
def test_codec_renders_errors(kind, anthropic_type):
    err = GatewayError(kind, "Something went wrong.")
    assert AnthropicMessagesCodec().render_error(err) == {
        "type": "error",
        "error": {"type": anthropic_type, "message": "Something went wrong."},
    }


def test_stream_encoder_error_frame_raises_in_the_anthropic_sdk():
    encoder = AnthropicMessagesCodec().new_stream_encoder(ChatRequest("m", (user("hi"),)), "r", "p")
    frame = encoder.error(GatewayError("overloaded", "Overloaded"))
    assert (
        frame
        == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    body = encoder.encode(TextDelta("partial")) + frame

    def handler(request):
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with pytest.raises(anthropic.APIStatusError) as exc:
        with sdk_client(handler).messages.stream(
            model="p", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            stream.get_final_message()
    assert "overloaded_error" in str(exc.value)

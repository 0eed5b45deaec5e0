"""The Gemini wire-protocol module: pure translation, no network."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.providers.gemini.adapter import GeminiAdapter
from gateway.providers.gemini.translate import SKIP_SIGNATURE
from gateway.schemas import (
    ChatRequest,
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

BASE = "https://generativelanguage.googleapis.com/v1beta"
CREDS = Credentials(base_url=BASE + "/", api_key="AIza-secret", upstream_model="gemini-2.5-flash")
ADAPTER = GeminiAdapter()


def user(text: str) -> Message:
    return Message(role="user", content=(TextPart(text),))


def body_of(req: ChatRequest, creds: Credentials = CREDS) -> dict:
    return orjson.loads(ADAPTER.build_chat_request(req, creds).body)


def run_stream(chunks: list[bytes]) -> list:
    parser = ADAPTER.new_stream_parser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- request -------------------------------------------------------------------------


def test_urls_and_api_key_header():
    req = ChatRequest(model="public", messages=(user("hi"),))
    plain = ADAPTER.build_chat_request(req, CREDS)
    assert plain.method == "POST"
    assert plain.url == BASE + "/models/gemini-2.5-flash:generateContent"
    assert plain.headers == {"content-type": "application/json", "x-goog-api-key": "AIza-secret"}
    streamed = ADAPTER.build_chat_request(
        ChatRequest(model="p", messages=(user("hi"),), stream=True), CREDS
    )
    assert streamed.url == BASE + "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "AIza-secret" not in streamed.url
    tuned = Credentials(base_url=BASE, api_key=None, upstream_model="tunedModels/my-tune")
    assert (
        ADAPTER.build_chat_request(req, tuned).url == BASE + "/tunedModels/my-tune:generateContent"
    )
    assert ADAPTER.build_chat_request(req, tuned).headers == {"content-type": "application/json"}


def test_system_user_assistant_and_generation_config():
    req = ChatRequest(
        model="p",
        messages=(
            Message(role="system", content=(TextPart("Be brief."),)),
            user("Hello"),
            user("Anyone there?"),
            Message(role="assistant", content=(TextPart("Yes."),)),
            Message(role="system", content=(TextPart("Answer in French."),)),
            Message(role="user", content=(TextPart(""), TextPart("Bye"))),
            Message(role="assistant"),  # empty: dropped
        ),
        max_tokens=256,
        temperature=0.3,
        top_p=0.9,
        stop=("END",),
        n=2,
        seed=7,
        user="u-1",
        metadata={"k": "v"},
        extra={"logit_bias": {"1": 2}},
    )
    assert body_of(req) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}, {"text": "Anyone there?"}]},
            {"role": "model", "parts": [{"text": "Yes."}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 256,
            "temperature": 0.3,
            "topP": 0.9,
            "seed": 7,
            "stopSequences": ["END"],
            "candidateCount": 2,
        },
    }


def test_tool_calls_and_results_with_name_lookup():
    weather = Tool(
        name="get_weather",
        description="Current weather",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    )
    req = ChatRequest(
        model="p",
        tools=(weather, Tool(name="get_time", parameters={"type": "object", "properties": {}})),
        messages=(
            user("Weather and time in Paris?"),
            Message(
                role="assistant",
                content=(TextPart("Checking."),),
                tool_calls=(
                    ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
                    ToolCall("call_b", "get_time", ""),
                ),
            ),
            Message(role="tool", tool_call_id="call_a", content=(TextPart('{"temp_c": 21}'),)),
            Message(role="tool", tool_call_id="call_b", content=(TextPart("14:05"),)),
            Message(role="tool", tool_call_id="call_b", content=(TextPart("boom"),), is_error=True),
            user("Thanks"),
        ),
    )
    body = body_of(req)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
                {"functionResponse": {"name": "get_time", "response": {"error": "boom"}}},
                {"text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert "toolConfig" not in body


def test_tool_result_name_comes_from_the_latest_call_with_that_id():
    req = ChatRequest(
        model="p",
        messages=(
            user("go"),
            Message(role="assistant", tool_calls=(ToolCall("call_0_0", "first", "{}"),)),
            Message(role="tool", tool_call_id="call_0_0", content=(TextPart("1"),)),
            Message(role="assistant", tool_calls=(ToolCall("call_0_0", "second", "{}"),)),
            Message(role="tool", tool_call_id="call_0_0", content=(TextPart("[1, 2]"),)),
        ),
    )
    parts = [c["parts"][0] for c in body_of(req)["contents"] if "functionResponse" in c["parts"][0]]
    assert parts == [
        {"functionResponse": {"name": "first", "response": {"content": "1"}}},
        {"functionResponse": {"name": "second", "response": {"content": "[1, 2]"}}},
    ]


def test_tool_result_without_matching_call_is_rejected():
    req = ChatRequest(
        model="p",
        messages=(user("x"), Message(role="tool", tool_call_id="nope", content=(TextPart("1"),))),
    )
    with pytest.raises(GatewayError) as info:
        ADAPTER.build_chat_request(req, CREDS)
    assert info.value.kind == "invalid_request"
    assert info.value.param == "messages[1].tool_call_id"


def test_tool_call_arguments_must_be_a_json_object():
    req = ChatRequest(
        model="p",
        messages=(user("x"), Message(role="assistant", tool_calls=(ToolCall("c", "f", "[1]"),))),
    )
    with pytest.raises(GatewayError) as info:
        ADAPTER.build_chat_request(req, CREDS)
    assert info.value.kind == "invalid_request"
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_gemini_3_replays_calls_with_the_skip_signature():
    creds = Credentials(base_url=BASE, api_key="k", upstream_model="gemini-3-pro-preview")
    calls = (ToolCall("a", "f", '{"x": 1}'), ToolCall("b", "f", '{"x": 2}'))
    req = ChatRequest(model="p", messages=(user("x"), Message(role="assistant", tool_calls=calls)))
    assert body_of(req, creds)["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": SKIP_SIGNATURE},
        {"functionCall": {"name": "f", "args": {"x": 2}}},
    ]
    assert SKIP_SIGNATURE == "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="
    assert "thoughtSignature" not in body_of(req)["contents"][1]["parts"][0]


def test_images():
    req = ChatRequest(
        model="p",
        messages=(
            Message(
                role="user",
                content=(
                    TextPart("What is this?"),
                    ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                    ImagePart(url="https://example.com/a/cat.JPG?size=large"),
                    ImagePart(url="https://example.com/photo.webp"),
                    ImagePart(url="https://example.com/render"),
                    ImagePart(url="https://example.com/x.bin", media_type="image/heic"),
                ),
            ),
        ),
    )
    assert body_of(req)["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {
            "fileData": {
                "mimeType": "image/jpeg",
                "fileUri": "https://example.com/a/cat.JPG?size=large",
            }
        },
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/photo.webp"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}},
        {"fileData": {"mimeType": "image/heic", "fileUri": "https://example.com/x.bin"}},
    ]


def test_json_object_response_format():
    req = ChatRequest(
        model="p", messages=(user("x"),), response_format=ResponseFormat("json_object")
    )
    assert body_of(req)["generationConfig"] == {"responseMimeType": "application/json"}


def test_json_schema_is_cleaned_for_gemini():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Answer",
        "type": "object",
        "strict": True,
        "additionalProperties": False,
        "$defs": {
            "Step": {
                "type": "object",
                "properties": {
                    "explanation": {"type": "string", "format": "uri"},
                    "when": {"type": "string", "format": "date-time"},
                },
                "required": ["explanation"],
                "additionalProperties": False,
            }
        },
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
            "final_answer": {"type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "optional"},
            "score": {"type": ["integer", "null"], "minimum": 0},
            "kind": {"const": "math"},
            "tags": {"type": "array"},
            "x-vendor": {"type": "boolean", "x-internal": True},
        },
        "required": ["steps", "final_answer", "missing"],
    }
    req = ChatRequest(
        model="p",
        messages=(user("x"),),
        response_format=ResponseFormat("json_schema", schema=schema, name="answer", strict=True),
    )
    assert body_of(req)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "title": "Answer",
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "explanation": {"type": "string"},
                            "when": {"type": "string", "format": "date-time"},
                        },
                        "required": ["explanation"],
                        "propertyOrdering": ["explanation", "when"],
                    },
                },
                "final_answer": {"type": "string"},
                "note": {"type": "string", "description": "optional", "nullable": True},
                "score": {"minimum": 0, "type": "integer", "nullable": True},
                "kind": {"enum": ["math"], "type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "x-vendor": {"type": "boolean"},
            },
            "required": ["steps", "final_answer"],
            "propertyOrdering": [
                "steps",
                "final_answer",
                "note",
                "score",
                "kind",
                "tags",
                "x-vendor",
            ],
        },
    }


def test_schema_recursion_and_unions():
    tree = {
        "type": "object",
        "properties": {
            "root": {"$ref": "#/definitions/Node"},
            "value": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]},
            "base": {"allOf": [{"$ref": "#/definitions/Leaf"}], "description": "merged"},
        },
        "definitions": {
            "Node": {
                "type": "object",
                "properties": {
                    "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}}
                },
            },
            "Leaf": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    }
    req = ChatRequest(model="p", messages=(user("x"),), tools=(Tool(name="t", parameters=tree),))
    assert body_of(req)["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "object",
        "properties": {
            "root": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"type": "object"}}},
            },
            "value": {
                "anyOf": [
                    {"type": "string", "nullable": True},
                    {"type": "number", "nullable": True},
                ]
            },
            "base": {
                "description": "merged",
                "type": "object",
                "properties": {"id": {"type": "integer"}},
            },
        },
    }


def test_tool_choice_modes():
    tools = (
        Tool(name="a", parameters={"type": "object", "properties": {"q": {"type": "string"}}}),
    )

    def config(choice: ToolChoice | None) -> object:
        req = ChatRequest(model="p", messages=(user("x"),), tools=tools, tool_choice=choice)
        return body_of(req).get("toolConfig")

    assert config(None) is None
    assert config(ToolChoice("auto")) == {"functionCallingConfig": {"mode": "AUTO"}}
    assert config(ToolChoice("none")) == {"functionCallingConfig": {"mode": "NONE"}}
    assert config(ToolChoice("required")) == {"functionCallingConfig": {"mode": "ANY"}}
    assert config(ToolChoice("tool", name="a")) == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a"]}
    }
    no_tools = ChatRequest(model="p", messages=(user("x"),), tool_choice=ToolChoice("none"))
    assert "toolConfig" not in body_of(no_tools)


# --- response ------------------------------------------------------------------------


def test_parse_text_response_with_usage():
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Thinking about greetings", "thought": True},
                        {"text": "Hello"},
                        {"text": ", world!", "thoughtSignature": "CiQBVKhc7g=="},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 120,
            "candidatesTokenCount": 4,
            "cachedContentTokenCount": 100,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 154,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-123",
    }
    resp = ADAPTER.parse_chat_response(orjson.dumps(body))
    assert resp.id == "resp-123"
    assert resp.model == "gemini-2.5-flash"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message == Message(role="assistant", content=(TextPart("Hello, world!"),))
    assert choice.finish_reason == "stop"
    assert resp.usage == Usage(
        input_tokens=120, output_tokens=34, cached_input_tokens=100, reasoning_tokens=30
    )
    assert resp.usage.total_tokens == 154
    assert resp.created > 0


def test_parse_function_call_response():
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me look."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time", "args": {}, "id": "fc-9"}},
                        {"functionCall": {"name": "ping"}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 20},
    }
    resp = ADAPTER.parse_chat_response(orjson.dumps(body))
    assert resp.id.startswith("gemini-") and len(resp.id) == 39
    assert resp.model == ""
    assert resp.choices[0].message.text == "Let me look."
    assert resp.choices[0].message.tool_calls == (
        ToolCall("call_0_0", "get_weather", '{"city":"Paris"}'),
        ToolCall("fc-9", "get_time", "{}"),
        ToolCall("call_0_2", "ping", "{}"),
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=50, output_tokens=20)


def test_parse_multiple_candidates_and_finish_reasons():
    reasons = [
        "MAX_TOKENS",
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MALFORMED_FUNCTION_CALL",
        "OTHER",
        "LANGUAGE",
    ]
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": str(i)}]},
                "finishReason": r,
                "index": i,
            }
            for i, r in enumerate(reasons)
        ]
        + [{"content": {"role": "model"}, "index": 9}],  # thinking used all tokens: no parts
        "usageMetadata": {"promptTokenCount": 3},
    }
    resp = ADAPTER.parse_chat_response(orjson.dumps(body))
    assert [c.finish_reason for c in resp.choices] == [
        "length",
        "content_filter",
        "content_filter",
        "content_filter",
        "content_filter",
        "content_filter",
        "stop",
        "stop",
        "stop",
        None,
    ]
    assert [c.index for c in resp.choices] == list(range(10))
    assert resp.choices[9].message == Message(role="assistant")
    assert resp.usage == Usage(input_tokens=3, output_tokens=0)


def test_blocked_prompt_raises_content_filter():
    body = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    with pytest.raises(GatewayError) as info:
        ADAPTER.parse_chat_response(orjson.dumps(body))
    assert info.value.kind == "content_filter"
    assert info.value.status == 400
    assert info.value.message == "The upstream blocked the prompt (SAFETY)."


def test_malformed_responses():
    for body in (b"not json", b"[]", b"{}"):
        with pytest.raises(GatewayError) as info:
            ADAPTER.parse_chat_response(body)
        assert info.value.kind == "upstream_error"


# --- streaming -----------------------------------------------------------------------

TRANSCRIPT = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Let me check the"}],'
    b'"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 31,'
    b'"totalTokenCount": 31,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 31}]},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "mQtaaPXxKf6WmNAPm5Sq4Aw"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " weather in Paris, caf\xc3\xa9 '
    b'\xe2\x98\x95."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 31,'
    b'"candidatesTokenCount": 9,"totalTokenCount": 92,"thoughtsTokenCount": 52},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "mQtaaPXxKf6WmNAPm5Sq4Aw"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather",'
    b'"args": {"city": "Paris","unit": "celsius"}},"thoughtSignature": "CiQBVKhc7g5Lw=="}],'
    b'"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": '
    b'{"promptTokenCount": 31,"candidatesTokenCount": 21,"totalTokenCount": 104,'
    b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 31}],"thoughtsTokenCount": 52},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "mQtaaPXxKf6WmNAPm5Sq4Aw"}\r\n\r\n'
)

EXPECTED = [
    StreamStart("mQtaaPXxKf6WmNAPm5Sq4Aw", "gemini-2.5-flash"),
    TextDelta("Let me check the"),
    TextDelta(" weather in Paris, café ☕."),
    ToolCallStart(0, "call_0_0", "get_weather"),
    ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=31, output_tokens=73, reasoning_tokens=52)),
]


def test_stream_transcript_whole():
    assert run_stream([TRANSCRIPT]) == EXPECTED


def test_stream_transcript_split_into_1_and_5_byte_chunks():
    assert run_stream(split(TRANSCRIPT, 1)) == EXPECTED
    assert run_stream(split(TRANSCRIPT, 5)) == EXPECTED


def test_stream_last_frame_without_trailing_blank_line():
    assert run_stream([TRANSCRIPT.rstrip(b"\r\n")]) == EXPECTED


def test_stream_parallel_calls_and_candidates_count_tool_indexes_separately():
    frame = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "a", "args": {"n": 1}}},
                        {"functionCall": {"name": "b", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            },
            {
                "content": {"role": "model", "parts": [{"functionCall": {"name": "c", "id": "x"}}]},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ]
    }
    events = run_stream([b"data: " + orjson.dumps(frame) + b"\n\n"])
    assert events[0].model == "" and events[0].id.startswith("gemini-")
    assert events[1:] == [
        ToolCallStart(0, "call_0_0", "a", 0),
        ToolCallDelta(0, '{"n":1}', 0),
        ToolCallStart(1, "call_0_1", "b", 0),
        ToolCallDelta(1, "{}", 0),
        Finish("tool_calls", 0),
        ToolCallStart(0, "x", "c", 1),
        ToolCallDelta(0, "{}", 1),
        Finish("length", 1),
    ]


def test_stream_without_finish_reason_raises_on_close():
    first_frame = TRANSCRIPT.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    parser = ADAPTER.new_stream_parser()
    assert parser.feed(first_frame) == EXPECTED[:2]
    with pytest.raises(GatewayError) as info:
        parser.close()
    assert info.value.kind == "upstream_error"
    assert "ended before it was complete" in info.value.message


def test_empty_stream_raises_on_close():
    with pytest.raises(GatewayError):
        run_stream([b""])


def test_stream_error_frame_raises():
    error = b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n'  # noqa: E501
    parser = ADAPTER.new_stream_parser()
    parser.feed(TRANSCRIPT.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    with pytest.raises(GatewayError) as info:
        parser.feed(error)
    assert info.value.kind == "overloaded"
    assert info.value.message == "The model is overloaded."
    assert info.value.retryable is True


def test_stream_blocked_prompt_raises_content_filter():
    frame = b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}\n\n'
    with pytest.raises(GatewayError) as info:
        ADAPTER.new_stream_parser().feed(frame)
    assert info.value.kind == "content_filter"


def test_stream_malformed_frame_raises():
    with pytest.raises(GatewayError) as info:
        ADAPTER.new_stream_parser().feed(b"data: {not json\n\n")
    assert info.value.kind == "upstream_error"


# --- errors --------------------------------------------------------------------------


def gemini_error_body(code: int, status: str, message: str, details: list | None = None) -> bytes:
    error = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


def test_error_rate_limit_with_retry_info():
    body = gemini_error_body(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota. Quota exceeded for metric: "
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
        [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"},
        ],
    )
    err = ADAPTER.parse_error(429, {}, body)
    assert (err.kind, err.status, err.retryable, err.retry_after) == ("rate_limit", 429, True, 17.0)
    assert ADAPTER.parse_error(429, {"retry-after": "3"}, body).retry_after == 3.0


def test_error_overloaded_and_invalid_argument():
    err = ADAPTER.parse_error(
        503, {}, gemini_error_body(503, "UNAVAILABLE", "The model is overloaded.")
    )
    assert (err.kind, err.status, err.retryable) == ("overloaded", 503, True)
    err = ADAPTER.parse_error(
        400, {}, gemini_error_body(400, "INVALID_ARGUMENT", "Invalid value at 'contents[0]'")
    )
    assert (err.kind, err.status, err.message) == (
        "invalid_request",
        400,
        "Invalid value at 'contents[0]'",
    )
    assert err.code is None


def test_error_context_length_exceeded():
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    err = ADAPTER.parse_error(400, {}, gemini_error_body(400, "INVALID_ARGUMENT", message))
    assert (err.kind, err.status, err.code) == (
        "context_length_exceeded",
        400,
        "context_length_exceeded",
    )
    assert err.message == message


def test_error_invalid_api_key_is_ours_not_the_clients():
    body = gemini_error_body(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
    )
    err = ADAPTER.parse_error(400, {}, body)
    assert (err.kind, err.status) == ("upstream_error", 502)
    assert err.message.endswith("API key not valid. Please pass a valid API key.")


def test_error_bodies_that_are_arrays_or_not_json():
    wrapped = b"[" + gemini_error_body(500, "INTERNAL", "An internal error has occurred.") + b"]"
    err = ADAPTER.parse_error(500, {}, wrapped)
    assert (err.kind, err.message, err.retryable) == (
        "upstream_error",
        "An internal error has occurred.",
        True,
    )
    err = ADAPTER.parse_error(504, {}, b"<html>Gateway Timeout</html>")
    assert (err.kind, err.message) == ("upstream_timeout", "The upstream answered HTTP 504.")


# --- embeddings ----------------------------------------------------------------------


def test_embeddings_round_trip():
    creds = Credentials(base_url=BASE, api_key="k", upstream_model="gemini-embedding-001")
    req = EmbeddingRequest(model="emb", inputs=("hello", "world"), dimensions=3)
    up = ADAPTER.build_embedding_request(req, creds)
    assert up.method == "POST"
    assert up.url == BASE + "/models/gemini-embedding-001:batchEmbedContents"
    assert up.headers == {"content-type": "application/json", "x-goog-api-key": "k"}
    assert orjson.loads(up.body) == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "hello"}]},
                "outputDimensionality": 3,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "world"}]},
                "outputDimensionality": 3,
            },
        ]
    }
    plain = ADAPTER.build_embedding_request(EmbeddingRequest(model="emb", inputs=("a",)), creds)
    assert orjson.loads(plain.body) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}
        ]
    }
    answer = {"embeddings": [{"values": [0.1, -0.2, 0.3]}, {"values": [0.0, 1.0, -1.5]}]}
    resp = ADAPTER.parse_embedding_response(orjson.dumps(answer))
    assert resp.vectors == ((0.1, -0.2, 0.3), (0.0, 1.0, -1.5))
    assert resp.usage == Usage()
    with pytest.raises(GatewayError):
        ADAPTER.parse_embedding_response(b'{"embedding": {"values": []}}')

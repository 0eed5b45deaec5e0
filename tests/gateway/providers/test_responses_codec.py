"""The Responses / Conversations wire module: parsing, rendering and the stream, checked against
the official SDK's own types (and, through a mock transport, its client)."""

from __future__ import annotations

import re

import httpx
import openai
import orjson
import pytest
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from openai.types.responses import Response, ResponseItem, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.errors import GatewayError
from gateway.providers.openai.responses import (
    ResponseInfo,
    ResponsesRequest,
    item_ids,
    new_id,
    parse_items,
    parse_request,
    render_conversation,
    render_deleted,
    render_item,
    render_list,
    render_response,
)
from gateway.providers.openai.responses_stream import ResponsesStreamEncoder
from gateway.schemas import (
    ChatResponse,
    Choice,
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

EVENTS = TypeAdapter(ResponseStreamEvent)
CONVERSATION_ITEM = TypeAdapter(ConversationItem)
RESPONSE_ITEM = TypeAdapter(ResponseItem)
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


def info_for(body: dict | None = None, **kw) -> ResponseInfo:
    req = parse_request(body or {"model": "gpt-x", "input": "hi"})
    return ResponseInfo(
        id="resp_abc", created_at=1_700_000_000, model="public-m", request=req, **kw
    )


def answer(
    text: str = "", calls: tuple[ToolCall, ...] = (), reason="stop", usage=Usage(10, 5)
) -> ChatResponse:
    msg = Message("assistant", (TextPart(text),) if text else (), calls)
    return ChatResponse("up-1", "upstream-m", (Choice(0, msg, reason),), usage, created=1)


def sdk(handler) -> openai.OpenAI:
    """The real client over a mock transport; strict validation makes it check every field."""
    return openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        _strict_response_validation=True,
        max_retries=0,
    )


def split_sse(data: bytes) -> list[tuple[str, dict]]:
    """Frames -> (event line, JSON). Asserts every frame is `event:` + one `data:` line."""
    frames = []
    for raw in data.split(b"\n\n"):
        if not raw:
            continue
        event_line, data_line = raw.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        frames.append((event_line[7:].decode(), orjson.loads(data_line[6:])))
    return frames


def run_stream(encoder: ResponsesStreamEncoder, events: list) -> bytes:
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


# --- parse_request ------------------------------------------------------------------


def test_string_input_is_one_user_message_with_defaults():
    req = parse_request({"model": "gpt-x", "input": "Hello"})

    assert isinstance(req, ResponsesRequest)
    assert req.chat.messages == (Message("user", (TextPart("Hello"),)),)
    assert req.chat.model == "gpt-x"
    assert req.chat.stream is False
    assert (req.instructions, req.previous_response_id, req.conversation) == (None, None, None)
    assert req.store is True
    assert req.chat.tools == () and req.chat.tool_choice is None
    assert req.chat.extra == {}


def test_top_level_fields_map_onto_the_chat_request():
    req = parse_request(
        {
            "model": "gpt-x",
            "input": "Weather?",
            "instructions": "Be brief.",
            "stream": True,
            "temperature": 0.2,
            "top_p": 0.9,
            "max_output_tokens": 300,
            "user": "u-1",
            "metadata": {"team": "a", "n": 3},
            "store": False,
            "previous_response_id": "resp_prev",
            "tools": [
                {"type": "function", "name": "weather", "description": "d", "parameters": WEATHER}
            ],
            "tool_choice": {"type": "function", "name": "weather"},
            "parallel_tool_calls": False,
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": WEATHER, "strict": True},
                "verbosity": "low",
            },
            "reasoning": {"effort": "low", "summary": "auto"},
            "prompt_cache_key": "pck",
            # Responses-only fields: dropped, since `extra` reaches Chat Completions upstreams.
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "background": False,
            "max_tool_calls": 3,
        }
    )
    chat = req.chat
    assert req.instructions == "Be brief."
    assert req.store is False and req.previous_response_id == "resp_prev"
    assert chat.messages == (Message("user", (TextPart("Weather?"),)),)
    assert (chat.stream, chat.temperature, chat.top_p, chat.max_tokens) == (True, 0.2, 0.9, 300)
    assert chat.user == "u-1"
    assert chat.metadata == {"team": "a", "n": "3"}
    assert chat.tools == (Tool("weather", "d", WEATHER),)
    assert chat.tool_choice == ToolChoice(mode="tool", name="weather", parallel=False)
    assert chat.response_format == ResponseFormat("json_schema", WEATHER, "out", True)
    assert chat.extra == {"reasoning_effort": "low", "verbosity": "low", "prompt_cache_key": "pck"}


@pytest.mark.parametrize("conversation", ["conv_1", {"id": "conv_1"}])
def test_conversation_as_string_or_object(conversation):
    req = parse_request({"model": "m", "input": "x", "conversation": conversation})
    assert req.conversation == "conv_1"


def test_input_may_be_left_out_when_continuing():
    assert parse_request({"model": "m", "previous_response_id": "resp_1"}).chat.messages == ()
    assert parse_request({"model": "m", "conversation": "conv_1", "input": []}).chat.messages == ()


def test_every_item_type():
    items = [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Sys"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
                {"type": "input_image", "image_url": PNG, "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_old",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},  # dropped, not an error
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"A"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"B"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [
                {"type": "input_text", "text": "rain"},
                {"type": "input_image", "image_url": PNG},
            ],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"type": "function_call", "call_id": "c3", "name": "weather", "arguments": "{}"},
    ]
    messages = parse_request({"model": "m", "input": items}).chat.messages

    assert messages == (
        Message("system", (TextPart("Rules."),)),
        Message("system", (TextPart("Sys"),)),
        Message(
            "user",
            (
                TextPart("Look:"),
                ImagePart(url="https://x.test/a.png", detail="high"),
                ImagePart(data="iVBORw0KGgo=", media_type="image/png", detail="auto"),
            ),
        ),
        # Calls join the assistant turn before them: Chat Completions wants them together.
        Message(
            "assistant",
            (TextPart("Let me check."),),
            (ToolCall("c1", "weather", '{"city":"A"}'), ToolCall("c2", "weather", '{"city":"B"}')),
        ),
        Message("tool", (TextPart("sunny"),), tool_call_id="c1"),
        Message(
            "tool",
            (TextPart("rain"), ImagePart(data="iVBORw0KGgo=", media_type="image/png")),
            tool_call_id="c2",
        ),
        Message("assistant", (TextPart("No."),), (ToolCall("c3", "weather", "{}"),)),
    )


def test_a_function_call_after_a_tool_result_starts_a_new_assistant_turn():
    messages = parse_items(
        [
            {"type": "function_call_output", "call_id": "c0", "output": "x"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ]
    )
    assert messages[1] == Message("assistant", (), (ToolCall("c1", "f", "{}"),))


BAD_REQUESTS = [
    ({"input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": {"role": "user"}}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": ["hi"]}, "input[0]"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    (
        {"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "user"}]},
        "input[1].content",
    ),
    ({"model": "m", "input": [{"role": "user", "content": 5}]}, "input[0].content"),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
    ),
    (
        {
            "model": "m",
            "input": [{"role": "user", "content": ["a", {"type": "text", "text": "x"}]}],
        },
        "input[0].content[0]",
    ),
    (
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
        },
        "input[0].content[1].type",
    ),
    (
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}
            ],
        },
        "input[0].content[0].image_url",
    ),
    (
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/png,xx"}],
                }
            ],
        },
        "input[0].content[0].image_url",
    ),
    (
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}],
        },
        "input[0].content[0].file_id",
    ),
    (
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": PNG, "detail": "max"}],
                }
            ],
        },
        "input[0].content[0].detail",
    ),
    (
        {
            "model": "m",
            "input": [
                {"role": "assistant", "content": [{"type": "input_image", "image_url": PNG}]}
            ],
        },
        "input[0].content[0].type",
    ),
    (
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
        },
        "input[0].content[0].type",
    ),
    (
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"type": "function_call", "name": "f", "arguments": "{}"},
            ],
        },
        "input[2].call_id",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
        "input[0].name",
    ),
    (
        {
            "model": "m",
            "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}],
        },
        "input[0].arguments",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
        "input[0].output",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
        "input[0].call_id",
    ),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
    (
        {"model": "m", "input": "x", "previous_response_id": "resp_1", "conversation": "conv_1"},
        "conversation",
    ),
    ({"model": "m", "input": "x", "conversation": {"name": "c"}}, "conversation.id"),
    ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]},
        "tools[0].name",
    ),
    ({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format"),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
        "text.format.schema",
    ),
    ({"model": "m", "input": "x", "text": {"verbosity": "loud"}}, "text.verbosity"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "top_p": "1"}, "top_p"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"model": "m", "input": "x", "store": "yes"}, "store"),
    ({"model": "m", "input": "x", "metadata": ["a"]}, "metadata"),
    ({"model": "m", "input": "x", "instructions": ["a"]}, "instructions"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS, ids=[p for _, p in BAD_REQUESTS])
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(GatewayError) as caught:
        parse_request(body)
    err = caught.value
    assert (err.kind, err.status, err.param) == ("invalid_request", 400, param)
    assert err.message  # a sentence, not empty


def test_body_must_be_an_object():
    with pytest.raises(GatewayError) as caught:
        parse_request(["model"])
    assert caught.value.param == "body"


def test_parse_items_uses_its_param_name_and_requires_a_list():
    with pytest.raises(GatewayError) as caught:
        parse_items([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    assert caught.value.param == "items[1].role"
    with pytest.raises(GatewayError) as caught:
        parse_items(None)
    assert caught.value.param == "items"
    assert parse_items([]) == ()


# --- render_response -----------------------------------------------------------------


def test_text_response_validates_and_echoes_the_request():
    body = {
        "model": "gpt-x",
        "input": "hi",
        "instructions": "Be brief.",
        "metadata": {"k": "v"},
        "temperature": 0.5,
        "top_p": 0.8,
        "max_output_tokens": 50,
        "store": False,
        "conversation": {"id": "conv_9"},
        "tools": [{"type": "function", "name": "weather", "parameters": WEATHER}],
        "tool_choice": "required",
        "text": {"format": {"type": "json_schema", "name": "o", "schema": WEATHER, "strict": True}},
        "reasoning": {"effort": "high"},
    }
    usage = Usage(input_tokens=12, output_tokens=7, cached_input_tokens=4, reasoning_tokens=2)
    out = render_response(answer("Hello there", usage=usage), info_for(body), ["msg_1"])
    r = Response.model_validate(out)

    assert r.output_text == "Hello there"
    assert (r.id, r.object, r.model, r.status, r.created_at) == (
        "resp_abc",
        "response",
        "public-m",
        "completed",
        1_700_000_000,
    )
    assert [(o.type, o.id, o.status, o.role) for o in r.output] == [
        ("message", "msg_1", "completed", "assistant")
    ]
    assert r.output[0].content[0].annotations == []
    assert r.usage.input_tokens == 12 and r.usage.output_tokens == 7 and r.usage.total_tokens == 19
    assert r.usage.input_tokens_details.cached_tokens == 4
    assert r.usage.output_tokens_details.reasoning_tokens == 2
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"}
    assert (r.temperature, r.top_p, r.max_output_tokens) == (0.5, 0.8, 50)
    assert r.store is False and r.conversation.id == "conv_9" and r.previous_response_id is None
    assert r.tool_choice == "required" and r.parallel_tool_calls is True
    assert [(t.type, t.name, t.parameters) for t in r.tools] == [("function", "weather", WEATHER)]
    assert r.text.format.type == "json_schema" and r.text.format.schema_ == WEATHER
    assert r.reasoning.effort == "high"
    assert r.error is None and r.incomplete_details is None and r.truncation == "disabled"
    assert "output_text" not in out  # the SDK computes it


def test_tool_calls_become_function_call_items_with_the_given_ids():
    calls = (ToolCall("call_1", "weather", '{"city":"A"}'), ToolCall("call_2", "weather", "{}"))
    out = render_response(answer("Checking.", calls, "tool_calls"), info_for(), ["m1", "m1_1"])
    r = Response.model_validate(out)

    assert [o.type for o in r.output] == ["message", "function_call", "function_call"]
    assert [o.id for o in r.output[:2]] == ["m1", "m1_1"]
    assert re.fullmatch(r"fc_[0-9a-f]{48}", r.output[2].id)  # ran out of given ids
    assert [(o.call_id, o.name, o.arguments, o.status) for o in r.output[1:]] == [
        ("call_1", "weather", '{"city":"A"}', "completed"),
        ("call_2", "weather", "{}", "completed"),
    ]
    assert r.output_text == "Checking."
    assert r.status == "completed"


def test_calls_without_text_make_no_message_item():
    out = render_response(answer("", (ToolCall("c", "f", "{}"),), "tool_calls"), info_for())
    assert [o["type"] for o in out["output"]] == ["function_call"]
    assert Response.model_validate(out).output_text == ""


def test_length_finish_is_incomplete():
    r = Response.model_validate(render_response(answer("Cut", reason="length"), info_for()))
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete"
    assert r.completed_at is None


def test_unknown_usage_renders_as_zeros():
    r = Response.model_validate(render_response(answer("x", usage=Usage()), info_for()))
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (0, 0, 0)


def test_the_sdk_client_reads_a_rendered_response():
    payload = render_response(answer("From the gateway"), info_for(), ["msg_1"])
    client = sdk(lambda request: httpx.Response(200, json=payload))
    r = client.responses.create(model="gpt-x", input="hi")
    assert r.output_text == "From the gateway"
    assert r.id == "resp_abc"


# --- the stream ----------------------------------------------------------------------

TOOL_STREAM = [
    StreamStart("chatcmpl-1", "upstream-m"),
    TextDelta(""),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(0, "call_1", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallStart(1, "call_2", "time"),
    ToolCallDelta(1, "{}"),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=20, output_tokens=9, cached_input_tokens=3)),
]


def test_stream_events_validate_in_order_and_end_with_the_full_response():
    encoder = ResponsesStreamEncoder(info_for(), item_id="msg_s")
    frames = split_sse(run_stream(encoder, TOOL_STREAM))
    events = [EVENTS.validate_python(data) for _, data in frames]

    assert [name for name, _ in frames] == [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0].response
    assert created.status == "in_progress" and created.output == [] and created.id == "resp_abc"

    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    (text_done,) = [e for e in events if e.type == "response.output_text.done"]
    assert deltas == text_done.text == "Let me check."

    args = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [(a.item_id, a.output_index, a.arguments) for a in args] == [
        ("msg_s_1", 1, '{"city":"Paris"}'),
        ("msg_s_2", 2, "{}"),
    ]

    final = events[-1].response
    assert final.status == "completed" and final.completed_at is not None
    assert encoder.final == frames[-1][1]["response"]
    assert final.output_text == "Let me check."
    assert [o.id for o in final.output] == ["msg_s", "msg_s_1", "msg_s_2"] == encoder.output_ids
    assert [(o.type, o.status) for o in final.output] == [
        ("message", "completed"),
        ("function_call", "completed"),
        ("function_call", "completed"),
    ]
    assert final.output[1].call_id == "call_1" and final.output[2].name == "time"
    assert final.usage.input_tokens == 20 and final.usage.output_tokens == 9
    assert final.usage.input_tokens_details.cached_tokens == 3

    # What the encoder hands over for storing renders back to the very items streamed.
    stored = encoder.response()
    assert stored.choices[0].finish_reason == "tool_calls"
    assert stored.usage == Usage(input_tokens=20, output_tokens=9, cached_input_tokens=3)
    assert stored.choices[0].message == Message(
        "assistant",
        (TextPart("Let me check."),),
        (ToolCall("call_1", "weather", '{"city":"Paris"}'), ToolCall("call_2", "time", "{}")),
    )
    assert item_ids(stored.choices[0].message, encoder.item_id) == encoder.output_ids
    rendered = render_item(stored.choices[0].message, encoder.item_id)
    assert rendered == [o.model_dump(exclude_none=True) for o in final.output]


def test_the_sdk_stream_helper_accumulates_our_events():
    """`client.responses.stream()` runs the SDK's accumulator, which checks ids and indices."""
    body = run_stream(ResponsesStreamEncoder(info_for()), TOOL_STREAM)
    headers = {"content-type": "text/event-stream"}
    client = sdk(lambda request: httpx.Response(200, headers=headers, content=body))

    with client.responses.stream(model="gpt-x", input="hi") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert final.output_text == "Let me check."
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]

    raw = list(client.responses.create(model="gpt-x", input="hi", stream=True))
    assert (
        "".join(e.delta for e in raw if e.type == "response.output_text.delta") == "Let me check."
    )


def test_stream_without_a_start_event_still_opens_with_the_lifecycle_events():
    encoder = ResponsesStreamEncoder(info_for())
    frames = split_sse(encoder.encode(TextDelta("Hi")))
    assert [name for name, _ in frames] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    # No Finish event arrived: finish() still closes the item and completes.
    frames = split_sse(encoder.finish())
    assert frames[-1][0] == "response.completed"
    assert frames[-1][1]["sequence_number"] == 8
    assert Response.model_validate(frames[-1][1]["response"]).output_text == "Hi"
    assert encoder.response().choices[0].finish_reason == "stop"


def test_truncated_stream_ends_incomplete():
    encoder = ResponsesStreamEncoder(info_for())
    events = [
        StreamStart("c", "m"),
        TextDelta("partial"),
        Finish("length"),
        UsageReport(Usage(5, 16)),
    ]
    frames = split_sse(run_stream(encoder, events))
    for _, data in frames:
        EVENTS.validate_python(data)

    name, data = frames[-1]
    assert name == "response.incomplete"
    final = Response.model_validate(data["response"])
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].status == "incomplete"
    assert final.usage.output_tokens == 16


def test_empty_answer_is_one_empty_message():
    encoder = ResponsesStreamEncoder(info_for(), item_id="msg_e")
    frames = split_sse(run_stream(encoder, [StreamStart("c", "m"), Finish("stop")]))
    for _, data in frames:
        EVENTS.validate_python(data)
    final = Response.model_validate(frames[-1][1]["response"])
    assert [(o.type, o.id) for o in final.output] == [("message", "msg_e")]
    assert final.output_text == ""
    # Same shape as the stored (empty) answer renders to.
    assert render_item(encoder.response().choices[0].message, "msg_e") == [
        o.model_dump(exclude_none=True) for o in final.output
    ]


def test_stream_error_event_shape_and_the_sdk_raises():
    encoder = ResponsesStreamEncoder(info_for())
    head = encoder.encode(StreamStart("c", "m")) + encoder.encode(TextDelta("Hal"))
    err = GatewayError("rate_limit", "Slow down.", param="model")
    tail = encoder.error(err)
    frames = split_sse(head + tail)
    events = [EVENTS.validate_python(data) for _, data in frames]

    assert [e.sequence_number for e in events] == list(range(len(events)))
    failed, error = events[-2], events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "rate_limit_exceeded"
    assert failed.response.error.message == "Slow down."
    assert failed.response.output[0].status == "incomplete"
    assert encoder.final == frames[-2][1]["response"]
    assert (error.type, error.code, error.message, error.param) == (
        "error",
        "rate_limit",
        "Slow down.",
        "model",
    )
    assert frames[-1][1]["error"]["type"] == "rate_limit_error"
    # The stream is over: nothing more is sent.
    assert encoder.encode(TextDelta("more")) == b"" and encoder.finish() == b""

    headers = {"content-type": "text/event-stream"}
    client = sdk(lambda request: httpx.Response(200, headers=headers, content=head + tail))
    with pytest.raises(openai.APIError, match="Slow down."):
        list(client.responses.create(model="gpt-x", input="hi", stream=True))


def test_error_before_any_event_still_names_the_response():
    frames = split_sse(ResponsesStreamEncoder(info_for()).error(GatewayError("internal", "boom")))
    assert [name for name, _ in frames] == [
        "response.created",
        "response.in_progress",
        "response.failed",
        "error",
    ]
    assert frames[2][1]["response"]["error"]["code"] == "server_error"
    assert EVENTS.validate_python(frames[3][1]).code == "internal"


# --- items, lists, conversations -------------------------------------------------------

HISTORY = [
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "hi"},
            {"type": "input_image", "image_url": PNG, "detail": "low"},
        ],
    },
    {"role": "developer", "content": "Use tools."},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
    {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"A"}'},
    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    {
        "type": "function_call_output",
        "call_id": "c1",
        "output": [{"type": "input_image", "image_url": "https://x.test/i.png", "detail": "high"}],
    },
    {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
]


def test_render_item_round_trips_parse_items_and_validates():
    messages = parse_items(HISTORY)
    stored = [(f"item_{n}", m) for n, m in enumerate(messages)]
    items = [item for item_id, m in stored for item in render_item(m, item_id)]

    for item in items:
        CONVERSATION_ITEM.validate_python(item)
        RESPONSE_ITEM.validate_python(item)
    assert parse_items(items) == messages
    assert [(i["type"], i["id"]) for i in items] == [
        ("message", "item_0"),
        ("message", "item_1"),
        ("message", "item_2"),
        ("function_call", "item_2_1"),
        ("function_call_output", "item_3"),
        ("function_call_output", "item_4"),
        ("function_call", "item_5"),
    ]
    assert items[1]["role"] == "system"  # developer is stored as system
    assert items[0]["content"][1] == {"type": "input_image", "image_url": PNG, "detail": "low"}
    assert items[2]["content"] == [{"type": "output_text", "text": "Sure.", "annotations": []}]
    assert items[4]["output"] == "sunny" and items[5]["output"][0]["type"] == "input_image"
    assert all(i["status"] == "completed" for i in items)


def test_image_without_detail_renders_as_auto():
    (item,) = render_item(Message("user", (ImagePart(url="https://x.test/a.png"),)), "m")
    assert item["content"] == [
        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"}
    ]


def test_lists_validate_as_the_sdk_list_types():
    messages = parse_items(HISTORY)
    items = [i for n, m in enumerate(messages) for i in render_item(m, f"it_{n}")]
    page = render_list(items, has_more=True)

    for model in (ResponseItemList, ConversationItemList):
        parsed = model.model_validate(page)
        assert (parsed.first_id, parsed.last_id, parsed.has_more) == ("it_0", "it_5", True)
        assert len(parsed.data) == len(items)
    # An empty page, as OpenAI sends it.
    assert render_list([]) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_sdk_pages_conversation_items_by_last_id():
    messages = parse_items(HISTORY)
    items = [i for n, m in enumerate(messages) for i in render_item(m, f"it_{n}")]
    pages = {None: render_list(items[:4], has_more=True), "it_2_1": render_list(items[4:])}
    client = sdk(lambda request: httpx.Response(200, json=pages[request.url.params.get("after")]))
    got = list(client.conversations.items.list("conv_1"))
    assert [i.id for i in got] == [i["id"] for i in items]


def test_conversation_and_deleted_objects():
    conv = Conversation.model_validate(render_conversation("conv_1", 1_700_000_000, {"a": "b"}))
    assert (conv.id, conv.created_at, conv.metadata, conv.object) == (
        "conv_1",
        1_700_000_000,
        {"a": "b"},
        "conversation",
    )
    deleted = ConversationDeletedResource.model_validate(render_deleted("conv_1", "conversation"))
    assert (deleted.id, deleted.deleted, deleted.object) == ("conv_1", True, "conversation.deleted")
    assert render_deleted("resp_1", "response") == {
        "id": "resp_1",
        "object": "response",
        "deleted": True,
    }


def test_new_ids_are_prefixed_random_hex():
    ids = {new_id("resp") for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"resp_[0-9a-f]{48}", i) for i in ids)
    assert re.fullmatch(r"conv_[0-9a-f]{48}", new_id("conv_"))

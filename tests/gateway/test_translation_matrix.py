"""Every client protocol against every upstream protocol, through the real gateway.

The official openai and anthropic SDKs are the clients; the upstreams are the fake servers,
which speak each provider's wire protocol exactly.
"""

import asyncio
import json

import anthropic
import openai
import pytest

from tests.fakes.control import Reply, ToolCallSpec
from tests.gateway.helpers import apply_yaml, new_key

UPSTREAMS = ["openai", "azure", "anthropic", "gemini"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.fixture
def fakes(gateway, openai_fake, azure_fake, anthropic_fake, gemini_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: az, kind: azure_openai, base_url: "{azure_fake.base_url}", api_key: "{azure_fake.api_key}"}}
          - {{name: ant, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
          - {{name: gem, kind: gemini, base_url: "{gemini_fake.root_url}/v1beta", api_key: "{gemini_fake.api_key}"}}
        models:
          - {{name: m-openai, price: {{input_per_mtok: 1, output_per_mtok: 2}}, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
          - {{name: m-azure, deployments: [{{provider: az, model: my-deployment}}]}}
          - {{name: m-anthropic, deployments: [{{provider: ant, model: claude-haiku-4-5}}]}}
          - {{name: m-gemini, deployments: [{{provider: gem, model: gemini-2.5-flash}}]}}
    """)
    return {
        "openai": openai_fake,
        "azure": azure_fake,
        "anthropic": anthropic_fake,
        "gemini": gemini_fake,
    }


@pytest.fixture
def key(fakes):
    return new_key()


def oai(gateway, key):
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def claude(gateway, key):
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_openai_client_text(gateway, key, fakes, upstream):
    completion = oai(gateway, key).chat.completions.create(
        model=f"m-{upstream}",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello world"},
        ],
    )

    assert completion.choices[0].message.content == "echo: hello world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 3


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_openai_client_stream_text(gateway, key, fakes, upstream):
    stream = oai(gateway, key).chat.completions.create(
        model=f"m-{upstream}",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 5


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_openai_client_stream_tool_call_then_tool_result(gateway, key, fakes, upstream):
    fakes[upstream].script(Reply(tool_calls=[ToolCallSpec("get_weather", ARGS)]))
    client = oai(gateway, key)
    messages = [{"role": "user", "content": "weather in Paris?"}]
    tools = [{"type": "function", "function": WEATHER_TOOL}]

    with client.chat.completions.stream(model=f"m-{upstream}", messages=messages, tools=tools) as s:
        final = s.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == json.loads(ARGS)
    assert final.choices[0].finish_reason == "tool_calls"

    messages += [
        final.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
        {"role": "user", "content": "thanks"},
    ]
    answer = client.chat.completions.create(model=f"m-{upstream}", messages=messages, tools=tools)
    assert answer.choices[0].message.content.endswith("thanks")
    assert tool_result_sent(upstream, fakes[upstream].last_request.json, call.id)


def tool_result_sent(upstream, body, call_id):
    """The tool's answer reached the upstream in its own protocol's shape."""
    if upstream in ("openai", "azure"):
        return {"role": "tool", "tool_call_id": call_id, "content": '{"temp": 21}'} in body[
            "messages"
        ]
    if upstream == "anthropic":
        blocks = [
            b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]
        ]
        results = [b for b in blocks if b["type"] == "tool_result"]
        return [(r["tool_use_id"], "21" in json.dumps(r["content"])) for r in results] == [
            (call_id, True)
        ]
    parts = [p for c in body["contents"] for p in c["parts"]]
    responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
    return responses == [{"name": "get_weather", "response": {"temp": 21}}]


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_anthropic_client_text_and_stream(gateway, key, fakes, upstream):
    client = claude(gateway, key)
    message = client.messages.create(
        model=f"m-{upstream}",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi there"}],
    )
    assert message.content[0].text == "echo: hi there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3

    with client.messages.stream(
        model=f"m-{upstream}", max_tokens=100, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: a b c"
    assert final.usage.output_tokens == 4


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_anthropic_client_stream_tool_use(gateway, key, fakes, upstream):
    fakes[upstream].script(Reply(tool_calls=[ToolCallSpec("get_weather", ARGS)]))
    tool = {
        "name": "get_weather",
        "description": "weather",
        "input_schema": WEATHER_TOOL["parameters"],
    }

    with claude(gateway, key).messages.stream(
        model=f"m-{upstream}",
        max_tokens=100,
        tools=[tool],
        messages=[{"role": "user", "content": "weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()

    [block] = [b for b in final.content if b.type == "tool_use"]
    assert block.name == "get_weather" and block.input == json.loads(ARGS)
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("upstream", ["openai", "anthropic"])
def test_async_clients_stream(gateway, key, fakes, upstream):
    async def run():
        async_oai = openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key=key, max_retries=0
        )
        stream = await async_oai.chat.completions.create(
            model=f"m-{upstream}", messages=[{"role": "user", "content": "x y"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        async_claude = anthropic.AsyncAnthropic(
            base_url=gateway.base_url, api_key=key, max_retries=0
        )
        message = await async_claude.messages.create(
            model=f"m-{upstream}", max_tokens=10, messages=[{"role": "user", "content": "z"}]
        )
        return text, message.content[0].text

    assert asyncio.run(run()) == ("echo: x y", "echo: z")

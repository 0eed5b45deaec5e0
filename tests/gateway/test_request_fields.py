"""What the client sends reaches an OpenAI-compatible upstream intact, unknown fields included."""

import openai
import pytest

from tests.gateway.helpers import apply_yaml, new_key


@pytest.fixture
def client(gateway, openai_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - {{name: public-name, deployments: [{{provider: oai, model: upstream-name}}]}}
    """)
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)


def test_sampling_tools_format_and_unknown_fields_pass_through(client, openai_fake):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    client.chat.completions.create(
        model="public-name",
        messages=[
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            },
        ],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=50,
        stop=["END"],
        n=2,
        seed=7,
        user="u-1",
        metadata={"team": "search"},
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": schema, "strict": True},
        },
        tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False,
        extra_body={"logit_bias": {"42": -100}, "reasoning_effort": "low"},
    )
    sent = openai_fake.last_request.json

    assert sent["model"] == "upstream-name"
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
    }
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 50)
    assert (sent["stop"], sent["n"], sent["seed"], sent["user"]) == (["END"], 2, 7, "u-1")
    assert sent["metadata"] == {"team": "search"}
    assert sent["response_format"]["json_schema"] == {"name": "r", "schema": schema, "strict": True}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["logit_bias"] == {"42": -100} and sent["reasoning_effort"] == "low"


def test_n_choices_come_back_in_order(client):
    completion = client.chat.completions.create(
        model="public-name", messages=[{"role": "user", "content": "hi"}], n=3
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert completion.model == "public-name"

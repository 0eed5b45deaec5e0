"""Conditional routing: rules pick a model or pin a deployment from request facts."""

import openai
import pytest

from gateway import config
from tests.gateway.helpers import apply_yaml, new_key

HELLO = [{"role": "user", "content": "hello there"}]
ROUTING = """
    providers:
      - {{name: oai, kind: openai, base_url: "{oai}", api_key: "{oai_key}"}}
      - {{name: ant, kind: anthropic, base_url: "{ant}", api_key: "{ant_key}"}}
    models:
      - name: general
        deployments: [{{provider: oai, model: gpt-4o-mini}}, {{provider: ant, model: claude-haiku-4-5}}]
      - {{name: coder, deployments: [{{provider: oai, model: qwen-coder}}]}}
      - {{name: small, deployments: [{{provider: oai, model: small-model}}]}}
      - {{name: large, deployments: [{{provider: oai, model: large-model}}]}}
    rules:
      - name: code-to-coder
        when: {{model: [general], keywords: [python, stack trace]}}
        route_to: coder
      - name: eu-pinned
        when: {{tenant: [acme], header: {{x-region: "^eu$"}}}}
        deployment: ant/claude-haiku-4-5
      - name: batch-to-small
        when: {{tags: [batch]}}
        route_to: small
      - name: big-prompts
        when: {{model: [general], min_prompt_tokens: 2000}}
        route_to: large
"""


@pytest.fixture
def client(gateway, openai_fake, anthropic_fake):
    apply_yaml(
        ROUTING.format(
            oai=openai_fake.base_url,
            oai_key=openai_fake.api_key,
            ant=anthropic_fake.base_url,
            ant_key=anthropic_fake.api_key,
        )
    )
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)


def ask(client, text, **extra):
    messages = [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(
        model="general", messages=messages, **extra
    )
    return raw.headers, raw.parse()


def test_a_keyword_sends_code_questions_to_the_code_model(client, openai_fake, stored_usage):
    headers, answer = ask(client, "Why does my Python loop print twice?")

    assert headers["x-waystation-route"] == "rule=code-to-coder; model=coder"
    assert openai_fake.last_request.json["model"] == "qwen-coder"
    assert answer.model == "general"  # the client still sees the name it asked for
    [event] = stored_usage()
    assert (event.public_model, event.served_model) == ("general", "coder")
    assert event.routing == "rule=code-to-coder; model=coder"


def test_a_request_no_rule_matches_is_served_as_asked(client, openai_fake, stored_usage):
    headers, _ = ask(client, "Pythonic is not a keyword match")  # word boundaries

    assert "x-waystation-route" not in headers
    [event] = stored_usage()
    assert (event.served_model, event.routing) == ("general", "")


def test_tenant_and_header_pin_one_deployment(client, gateway, anthropic_fake, openai_fake):
    for _ in range(4):
        headers, _ = ask(client, "hi", extra_headers={"x-region": "eu"})
        assert headers["x-waystation-provider"] == "ant"
    assert len(anthropic_fake.requests) == 4 and not openai_fake.requests

    other = openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=new_key(tenant="globex"), max_retries=0
    )
    raw = other.chat.completions.with_raw_response.create(
        model="general", messages=HELLO, extra_headers={"x-region": "eu"}
    )
    assert "x-waystation-route" not in raw.headers  # the rule is acme's


@pytest.mark.parametrize(
    "how",
    [{"metadata": {"tags": "nightly,batch"}}, {"extra_headers": {"x-waystation-tags": "batch"}}],
    ids=["metadata", "header"],
)
def test_tags_from_metadata_or_header(client, openai_fake, how):
    headers, _ = ask(client, "hi", **how)
    assert headers["x-waystation-route"].startswith("rule=batch-to-small")
    assert openai_fake.last_request.json["model"] == "small-model"


def test_estimated_prompt_size_routes_long_prompts(client, openai_fake):
    headers, _ = ask(client, "word " * 500)  # ~625 tokens
    assert "x-waystation-route" not in headers
    headers, _ = ask(client, "word " * 2000)  # ~2,500 tokens
    assert headers["x-waystation-route"] == "rule=big-prompts; model=large"
    assert openai_fake.last_request.json["model"] == "large-model"


def test_rules_are_checked_whole_before_anything_is_applied(client):
    bad = """
        providers: [{name: p, kind: demo}]
        models: [{name: m, deployments: [{provider: p, model: x}]}]
        rules:
          - {name: a, when: {pattern: "(unclosed"}, route_to: m}
          - {name: b, when: {colour: blue}, route_to: m}
          - {name: c, when: {model: [m]}, route_to: nowhere}
          - {name: d, when: {}, deployment: p/other}
          - {name: e, when: {min_prompt_tokens: lots}}
    """
    with pytest.raises(config.ConfigError) as failure:
        config.parse(bad)
    text = "\n".join(failure.value.errors)
    assert "not a valid regular expression" in text
    assert "unknown condition field(s): colour" in text
    assert "routes to model 'nowhere'" in text
    assert "pins deployment 'p/other'" in text
    assert "'min_prompt_tokens' must be a whole number" in text
    assert "rule 'e' needs 'route_to'" in text

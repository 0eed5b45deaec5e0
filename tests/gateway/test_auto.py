"""The `auto` model: the cheapest candidate whose capabilities and complexity tier fit."""

import openai
import pytest

from gateway import auto
from gateway.auth import Principal
from gateway.rules import Facts
from gateway.schemas import ChatRequest, Message, TextPart
from tests.gateway.helpers import apply_yaml, new_key

CANDIDATES = """
    providers:
      - {{name: oai, kind: openai, base_url: "{oai}", api_key: "{oai_key}"}}
      - {{name: ant, kind: anthropic, base_url: "{ant}", api_key: "{ant_key}"}}
    models:
      - name: small
        tier: 1
        capabilities: [json]
        context_window: 4000
        price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}
        deployments: [{{provider: oai, model: small-model}}]
      - name: mid
        tier: 2
        capabilities: [tools, json]
        price: {{input_per_mtok: 1, output_per_mtok: 5}}
        deployments: [{{provider: ant, model: claude-haiku-4-5}}]
      - name: large
        tier: 3
        capabilities: [tools, vision, json]
        price: {{input_per_mtok: 2.5, output_per_mtok: 10}}
        deployments: [{{provider: oai, model: large-model}}]
      - {{name: auto, auto: [large, small, mid]}}
      - {{name: auto-small-only, auto: [small]}}
"""
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="


@pytest.fixture
def client(gateway, openai_fake, anthropic_fake):
    apply_yaml(
        CANDIDATES.format(
            oai=openai_fake.base_url,
            oai_key=openai_fake.api_key,
            ant=anthropic_fake.base_url,
            ant_key=anthropic_fake.api_key,
        )
    )
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)


def routed(client, content, model="auto", **extra):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **extra
    )
    raw.parse()
    return dict(part.split("=", 1) for part in raw.headers["x-waystation-route"].split("; ")[1:])


def test_a_simple_question_goes_to_the_cheapest_model(client, stored_usage):
    route = routed(client, "What is the capital of France?")

    assert route == {"model": "small", "tier": "1", "signals": "simple", "fits": "3"}
    [event] = stored_usage()
    assert (event.public_model, event.served_model) == ("auto", "small")
    assert event.routing.startswith("auto; model=small; tier=1")


def test_tools_rule_out_a_model_without_them(client):
    assert routed(client, "What is the weather?", tools=[TOOL])["model"] == "mid"


def test_an_image_needs_a_vision_model(client):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": IMAGE}},
    ]
    assert routed(client, content)["model"] == "large"


def test_a_complex_prompt_goes_to_a_stronger_tier(client):
    route = routed(client, "Design the architecture and analyze the trade-offs of sharding.")
    assert (route["model"], route["tier"]) == ("large", "3")
    route = routed(client, "Fix this bug: def f(): return x")
    assert (route["model"], route["tier"]) == ("mid", "2")


def test_a_prompt_beyond_a_context_window_skips_that_model(client):
    assert routed(client, "hi " * 5000)["model"] != "small"  # 4,000-token window


def test_no_candidate_with_the_needed_capabilities_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as failure:
        routed(client, "weather?", model="auto-small-only", tools=[TOOL])
    assert "capabilities needed: tools" in failure.value.message


def test_the_next_fitting_candidate_takes_over_when_the_choice_fails(client, openai_fake):
    openai_fake.fault(status=500)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-waystation-provider"] == "ant"  # small failed; mid is next cheapest
    assert raw.headers["x-waystation-attempts"] == "2"


@pytest.mark.parametrize(
    ("prompt", "tier", "signal"),
    [
        ("hello, how are you", 1, "simple"),
        ("Translate 'good morning' to Spanish", 1, "simple"),
        ("Why is my SELECT slow?", 3, "code"),
        ("Solve the equation 3 * 4 = x", 2, "math"),
        ("Prove that the sum of two even numbers is even, step by step", 3, "reasoning"),
        ("What? Where? When? Who?", 2, "many-questions"),
    ],
)
def test_the_classifier_tiers(prompt, tier, signal):
    req = ChatRequest("auto", (Message("user", (TextPart(prompt),)),))
    facts = Facts(Principal(1, 1, "t", True, frozenset()), req, {})
    needs = auto.assess(facts)
    assert (needs.tier, signal in needs.signals) == (tier, True)

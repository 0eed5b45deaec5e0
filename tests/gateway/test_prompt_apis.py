"""Published prompt APIs through the real gateway: subscription, variables, JSON output with
its retry, streaming, fixed versions, sticky A/B arms, chains and feedback. Plain HTTP (what
the docs page's curl does); the upstream is the OpenAI fake."""

from __future__ import annotations

from decimal import Decimal

import httpx
import orjson
import pytest

from gateway import prompt_calls
from portal import services
from portal.models import Product
from portal.services import SYSTEM
from prompts import chains, experiments, publishing
from prompts import services as library
from prompts.models import Feedback
from tests.fakes.control import Reply
from tests.gateway.helpers import apply_yaml

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: chat
        price: {{input_per_mtok: 1000, output_per_mtok: 2000}}
        deployments: [{{provider: oai, model: gpt-up}}]
"""
TEXT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}, "lang": {"enum": ["en", "de"]}},
    "required": ["text"],
}
SENTIMENT = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
}


@pytest.fixture
def world(gateway, openai_fake):
    from gateway import catalog

    apply_yaml(CONFIG.format(url=openai_fake.base_url, key=openai_fake.api_key))
    catalog.invalidate()
    owner = services.tenant_get_or_create(slug="acme")
    prompt = library.prompt_create(tenant=owner, slug="sentiment", name="Sentiment")
    v1 = library.version_create(
        prompt=prompt, model="chat", input_schema=TEXT_SCHEMA,
        messages=[{"role": "system", "content": "Classify sentiment."},
                  {"role": "user", "content": "Text: {{ text }}"}],
        output_format="json", output_schema=SENTIMENT,
    )  # fmt: skip
    library.label_set(prompt=prompt, name="production", version=v1)
    api = publishing.api_publish(
        tenant=owner, slug="sentiment", name="Sentiment API", prompt=prompt,
        approval_required=True,
    )  # fmt: skip
    caller = services.tenant_get_or_create(slug="globex")
    app = services.application_create(actor=SYSTEM, tenant=caller, name="shop")
    secret = services.api_key_create(tenant=caller, name="k", application=app).secret
    return {"owner": owner, "prompt": prompt, "v1": v1, "api": api, "app": app,
            "secret": secret, "url": gateway.base_url + "/api/p/acme/sentiment"}  # fmt: skip


def subscribe(world) -> None:
    sub = services.subscription_request(
        actor=SYSTEM, application=world["app"], product=world["api"].product
    )
    services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    from gateway import auth

    auth._cache.clear()


def post(url: str, secret: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(url, json=body, headers={"authorization": f"Bearer {secret}", **headers},
                      timeout=10)  # fmt: skip


def test_an_unsubscribed_application_is_refused_and_a_subscribed_one_gets_the_output(
    world, openai_fake, stored_usage
):
    refused = post(world["url"], world["secret"], {"text": "I love it"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "subscription_required"
    assert "'Sentiment API'" in refused.json()["error"]["message"]
    assert openai_fake.requests == []

    subscribe(world)
    openai_fake.script(Reply(text='{"label": "positive"}', input_tokens=7, output_tokens=4))
    answer = post(world["url"], world["secret"], {"text": "I love it"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output"] == {"label": "positive"}
    assert body["usage"]["input_tokens"] == 7 and body["usage"]["output_tokens"] == 4
    assert body["request_id"] == answer.headers["x-request-id"]
    assert body["version"] == 1
    sent = openai_fake.last_request.json
    assert sent["messages"][-1] == {"role": "user", "content": "Text: I love it"}
    assert sent["response_format"]["type"] == "json_schema"

    events = [e for e in stored_usage() if e.route == "prompt"]
    assert [e.status for e in events] == [403, 200]  # the refusal is on record too
    event = events[1]
    assert event.request_id == body["request_id"]
    assert event.tenant_id == world["app"].tenant_id  # the caller pays, not the owner
    assert event.cost == Decimal("0.015")  # 7 x 1000 + 4 x 2000 per million
    assert event.prompt["api"] == "sentiment" and event.prompt["version"] == 1
    assert [s["name"] for s in event.prompt["steps"]] == [""]


def test_invalid_variables_get_a_400_naming_each_path(world, openai_fake):
    subscribe(world)
    answer = post(world["url"], world["secret"], {"text": "", "lang": "fr", "extra": 1})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_variables"
    paths = {e["path"] for e in error["errors"]}
    assert paths == {"$.text", "$.lang"}
    for body in ([1, 2], "text"):
        assert post(world["url"], world["secret"], body).json()["error"]["errors"][0]["path"] == "$"
    not_json = httpx.post(world["url"], content=b"{", headers={"x-api-key": world["secret"]})
    assert not_json.status_code == 400
    assert openai_fake.requests == []


def test_an_invalid_json_answer_is_retried_once_then_reported_as_502(
    world, openai_fake, stored_usage
):
    subscribe(world)
    openai_fake.script(Reply(text="It is positive!"), Reply(text='{"label": "positive"}'))
    answer = post(world["url"], world["secret"], {"text": "great"})
    assert answer.status_code == 200 and answer.json()["output"] == {"label": "positive"}
    assert len(openai_fake.requests) == 2

    openai_fake.script(Reply(text='{"label": "happy"}'), Reply(text="```json\n{}\n```"))
    failed = post(world["url"], world["secret"], {"text": "great"})
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert error["code"] == "invalid_output"
    assert "output schema at $" in error["message"] and "'label' is a required" in error["message"]

    events = {e.request_id: e for e in stored_usage()}
    assert len(events[answer.json()["request_id"]].prompt["steps"]) == 2  # both attempts paid
    assert events[failed.headers["x-request-id"]].status == 502


def test_streaming_sends_deltas_then_done(world, openai_fake, stored_usage):
    subscribe(world)
    openai_fake.script(Reply(text='{"label": "negative"}'))
    with httpx.stream("POST", world["url"] + "?stream=true", json={"text": "awful"},
                      headers={"authorization": f"Bearer {world['secret']}"}) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = _sse(response.read())
    names = [name for name, _ in frames]
    assert names[-1] == "done" and "delta" in names
    streamed = "".join(data["text"] for name, data in frames if name == "delta")
    assert orjson.loads(streamed) == {"label": "negative"}
    done = frames[-1][1]
    assert done["output"] == {"label": "negative"} and done["usage"]["output_tokens"] > 0
    event = next(e for e in stored_usage() if e.request_id == done["request_id"])
    assert event.stream is False and event.route == "prompt" and event.output_tokens > 0


def _sse(raw: bytes) -> list[tuple[str, dict]]:
    frames = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        frames.append((lines["event"], orjson.loads(lines["data"])))
    return frames


def test_a_fixed_version_path_and_unknown_apis(world, openai_fake):
    subscribe(world)
    v2 = library.version_create(
        prompt=world["prompt"], model="chat", input_schema=TEXT_SCHEMA,
        messages=[{"role": "user", "content": "V2 {{ text }}"}],
    )  # fmt: skip
    answer = post(world["url"] + "/v/2", world["secret"], {"text": "hi"})
    assert answer.status_code == 200 and answer.json()["version"] == v2.number
    assert answer.json()["output"] == "echo: V2 hi"  # a text version: the text itself
    missing = post(world["url"] + "/v/9", world["secret"], {"text": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
    unknown = post(world["url"].replace("sentiment", "nope"), world["secret"], {"text": "hi"})
    assert unknown.status_code == 404
    assert httpx.get(world["url"], headers={"x-api-key": world["secret"]}).status_code == 405

    services.product_update(actor=SYSTEM, product=world["api"].product, status="retired")
    prompt_calls.forget()  # what a process read lasts GATEWAY_CATALOG_CACHE_SECONDS
    assert post(world["url"], world["secret"], {"text": "hi"}).status_code == 404


def test_ab_assignment_is_sticky_per_end_user_and_recorded_per_arm(
    world, openai_fake, stored_usage
):
    subscribe(world)
    v2 = library.version_create(
        prompt=world["prompt"], model="chat", input_schema=TEXT_SCHEMA,
        messages=[{"role": "user", "content": "Second: {{ text }}"}],
    )  # fmt: skip
    experiment = experiments.experiment_start(
        prompt=world["prompt"], name="wording", arms=[(world["v1"], 1), (v2, 1)]
    )
    arms = experiment.arms.all()
    seen: dict[str, set[int]] = {}
    for user in [f"user-{n}" for n in range(12)]:
        for _ in range(2):
            answer = post(
                world["url"], world["secret"], {"text": "x"}, **{"x-waystation-user": user}
            )
            version = answer.json().get("version") if answer.status_code == 200 else None
            if answer.status_code == 502:  # v1 wants JSON; the echo is not: still an arm call
                version = 1
            seen.setdefault(user, set()).add(version)
    assert all(len(versions) == 1 for versions in seen.values())  # sticky
    assert {v for versions in seen.values() for (v,) in [tuple(versions)]} == {1, 2}  # split

    events = [e for e in stored_usage() if e.route == "prompt"]
    by_arm = {arm.id: [e for e in events if e.prompt.get("arm") == arm.id] for arm in arms}
    assert all(by_arm.values()) and sum(len(v) for v in by_arm.values()) == 24
    assert all(e.prompt["experiment"] == experiment.id for e in events)
    assert {e.status for e in by_arm[arms[0].id]} == {502}  # the JSON arm's errors count there
    assert {e.status for e in by_arm[arms[1].id]} == {200}


def test_a_three_step_chain_passes_outputs_on_and_skips_by_condition(
    world, openai_fake, stored_usage
):
    owner, prompt = world["owner"], world["prompt"]
    reply = library.prompt_create(tenant=owner, slug="reply", name="Reply")
    library.version_create(
        prompt=reply, model="chat",
        input_schema={"type": "object", "properties": {"text": {"type": "string"},
                                                       "mood": {"type": "string"}}},
        messages=[{"role": "user", "content": "Answer a {{ mood }} customer: {{ text }}"}],
    )  # fmt: skip
    escalate = library.prompt_create(tenant=owner, slug="escalate", name="Escalate")
    library.version_create(
        prompt=escalate, model="chat",
        input_schema={"type": "object", "properties": {"draft": {"type": "string"}}},
        messages=[{"role": "user", "content": "Escalate: {{ draft }}"}],
    )  # fmt: skip
    chain = chains.chain_save(
        tenant=owner, slug="support", name="Support", input_schema=TEXT_SCHEMA,
        steps=[
            {"name": "classify", "prompt": prompt.slug, "version": 1,
             "variables": {"text": "{{ input.text }}"}},
            {"name": "reply", "prompt": "reply", "version": 1,
             "variables": {"text": "{{ input.text }}", "mood": "{{ steps.classify.output.label }}"}},
            {"name": "escalate", "prompt": "escalate", "version": 1,
             "variables": {"draft": "{{ steps.reply.output }}"},
             "when": 'steps.classify.output.label == "negative"'},
        ],
    )  # fmt: skip
    api = publishing.api_publish(tenant=owner, slug="support", name="Support", chain=chain,
                                 approval_required=False)  # fmt: skip
    services.subscription_request(actor=SYSTEM, application=world["app"], product=api.product)
    url = world["url"].replace("sentiment", "support")

    openai_fake.script(Reply(text='{"label": "positive"}'))
    happy = post(url, world["secret"], {"text": "thanks"})
    assert happy.status_code == 200, happy.text
    assert happy.json()["output"] == "echo: Answer a positive customer: thanks"
    assert [(s["name"], s["skipped"]) for s in happy.json()["steps"]] == [
        ("classify", None), ("reply", None), ("escalate", True)
    ]  # fmt: skip

    openai_fake.script(Reply(text='{"label": "negative"}'))
    angry = post(url, world["secret"], {"text": "broken"})
    assert angry.json()["output"] == "echo: Escalate: echo: Answer a negative customer: broken"
    assert len(angry.json()["steps"]) == 3 and not any(s["skipped"] for s in angry.json()["steps"])

    event = next(e for e in stored_usage() if e.request_id == angry.json()["request_id"])
    assert [s["name"] for s in event.prompt["steps"]] == ["classify", "reply", "escalate"]
    assert event.input_tokens == sum(s["input_tokens"] for s in event.prompt["steps"])
    assert event.public_model == "chain:support"
    assert post(url + "/v/1", world["secret"], {"text": "x"}).status_code == 404


def test_feedback_is_recorded_under_the_callers_tenant(world):
    headers = {"authorization": f"Bearer {world['secret']}"}
    url = world["url"].replace("/api/p/acme/sentiment", "/api/v1/feedback")
    ok = httpx.post(url, json={"request_id": "r-1", "score": 0.8, "comment": "good"},
                    headers=headers)  # fmt: skip
    assert ok.status_code == 201
    again = httpx.post(url, json={"request_id": "r-1", "score": 0}, headers=headers)
    assert again.status_code == 201
    saved = Feedback.objects.get(request_id="r-1")
    assert saved.score == 0 and saved.tenant_id == world["app"].tenant_id
    for bad in ({"request_id": "r-1", "score": 2}, {"request_id": "r-1", "score": True},
                {"score": 1}, {"request_id": "r", "score": "high"}, [1]):  # fmt: skip
        answer = httpx.post(url, json=bad, headers=headers)
        assert answer.status_code == 400, bad
    assert httpx.post(url, json={"request_id": "r", "score": 1}).status_code == 401
    assert Feedback.objects.count() == 1


def test_publishing_needs_a_label_and_makes_a_prompt_product(world):
    product = world["api"].product
    assert product.kind == Product.Kind.PROMPT and product.owner == world["owner"]
    assert product.approval_required
    with pytest.raises(services.ServiceError):
        publishing.api_publish(tenant=world["owner"], slug="other", name="Other",
                               prompt=world["prompt"], label="staging")  # fmt: skip
    with pytest.raises(services.ServiceError):
        publishing.api_publish(tenant=world["owner"], slug="sentiment", name="Again",
                               prompt=world["prompt"])  # fmt: skip


def test_a_streamed_chain_sends_each_steps_deltas_and_step_events(world, openai_fake):
    owner = world["owner"]
    shout = library.prompt_create(tenant=owner, slug="shout", name="Shout")
    library.version_create(
        prompt=shout, model="chat",
        input_schema={"type": "object", "properties": {"label": {"type": "string"}}},
        messages=[{"role": "user", "content": "Say {{ label }} loudly"}],
    )  # fmt: skip
    chain = chains.chain_save(
        tenant=owner, slug="loud", name="Loud", input_schema=TEXT_SCHEMA,
        steps=[
            {"name": "classify", "prompt": "sentiment", "version": 1,
             "variables": {"text": "{{ input.text }}"}},
            {"name": "shout", "prompt": "shout", "version": 1,
             "variables": {"label": "{{ steps.classify.output.label }}"}},
        ],
    )  # fmt: skip
    api = publishing.api_publish(tenant=owner, slug="loud", name="Loud", chain=chain,
                                 approval_required=False)  # fmt: skip
    services.subscription_request(actor=SYSTEM, application=world["app"], product=api.product)
    openai_fake.script(Reply(text='{"label": "neutral"}'))
    response = post(world["url"].replace("sentiment", "loud"), world["secret"], {"text": "ok"},
                    accept="text/event-stream")  # fmt: skip
    frames = _sse(response.content)
    steps = [data for name, data in frames if name == "step"]
    assert [(s["name"], s["output"]) for s in steps] == [
        ("classify", {"label": "neutral"}), ("shout", "echo: Say neutral loudly")
    ]  # fmt: skip
    deltas = {data["step"] for name, data in frames if name == "delta"}
    assert deltas == {"classify", "shout"}
    assert frames[-1][0] == "done" and frames[-1][1]["output"] == "echo: Say neutral loudly"

    openai_fake.script(Reply(text="not json"))
    before = len(openai_fake.requests)
    failed = _sse(post(world["url"].replace("sentiment", "loud"), world["secret"],
                       {"text": "ok"}, accept="text/event-stream").content)  # fmt: skip
    assert failed[-1][0] == "error"
    assert failed[-1][1]["error"]["code"] == "invalid_output"
    assert "Step 'classify'" in failed[-1][1]["error"]["message"]
    assert len(openai_fake.requests) - before == 2  # a JSON step is asked twice, as unstreamed

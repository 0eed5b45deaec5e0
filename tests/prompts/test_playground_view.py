"""The prompt playground's page and run endpoint, against the live gateway server: the form
generated from a version's input schema, a streamed run through the real pipeline (usage
charged to the tenant), invalid variables by path, and who may run at all."""

from __future__ import annotations

import json

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from portal import services
from portal.models import Membership, Role
from prompts import services as library
from prompts.views.playground import schema_fields

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [
    {"role": "system", "content": "You classify sentiment."},
    {"role": "user", "content": "Text: {{ text }}"},
]
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "What to classify"}},
    "required": ["text"],
}
RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "What to classify"},
        "title": {"type": "string", "maxLength": 80},
        "tone": {"type": "string", "enum": ["formal", "casual"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number"},
        "strict": {"type": "boolean", "default": True},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["text", "tone"],
}


@pytest.fixture
def world():
    """alice owns tenant acme (prompt `sentiment`, v1 production, v2 newer), victor views it,
    mallory owns another tenant."""
    users = {n: get_user_model().objects.create_user(n, f"{n}@example.com") for n in
             ("alice", "victor", "mallory")}  # fmt: skip
    acme = services.tenant_create(actor=services.Actor(users["alice"]), name="Acme", slug="acme")
    services.tenant_create(actor=services.Actor(users["mallory"]), name="Other", slug="other")
    Membership.objects.create(user=users["victor"], tenant=acme, role=Role.VIEWER)
    actor = services.Actor(users["alice"])
    prompt = library.prompt_create(actor=actor, tenant=acme, slug="sentiment", name="Sentiment")
    v1 = library.version_create(
        actor=actor, prompt=prompt, messages=MESSAGES, model="demo-chat", input_schema=SCHEMA
    )
    library.version_create(
        actor=actor, prompt=prompt, messages=MESSAGES, model="demo-chat",
        input_schema=RICH_SCHEMA,
    )  # fmt: skip
    library.label_set(actor=actor, prompt=prompt, name="production", version=v1)
    return {**users, "acme": acme, "prompt": prompt}


@pytest.fixture
def demo_models():
    from gateway import catalog
    from tests.gateway.helpers import DEMO, apply_yaml

    apply_yaml(DEMO)
    catalog.invalidate()


PAGE = reverse("prompts:playground", kwargs={"slug": "acme", "prompt": "sentiment"})
RUN = reverse("prompts:playground_run", kwargs={"slug": "acme", "prompt": "sentiment"})


def browser_of(gateway, user) -> httpx.Client:
    """An HTTP client on the live server with `user`'s session and a CSRF token."""
    django_client = Client()
    django_client.force_login(user)
    http = httpx.Client(base_url=gateway.base_url, timeout=30)
    http.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    assert http.get("/portal/catalog/").status_code == 200  # any page: the CSRF cookie
    http.headers["X-CSRFToken"] = http.cookies["csrftoken"]
    return http


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for frame in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- the form generated from the schema ---------------------------------------------------


def test_each_schema_type_gets_its_control():
    fields = {f.name: f for f in schema_fields(RICH_SCHEMA)}
    # required first, as listed, then by name: jsonb does not keep the order of keys
    assert [(n, f.kind) for n, f in fields.items()] == [
        ("text", "textarea"), ("tone", "enum"), ("count", "integer"), ("ratio", "number"),
        ("strict", "boolean"), ("tags", "json"), ("title", "text"),
    ]  # fmt: skip
    assert [n for n, f in fields.items() if f.required] == ["text", "tone"]
    assert fields["text"].help == "What to classify"
    assert fields["tone"].choices == (('"formal"', "formal"), ('"casual"', "casual"))
    assert fields["strict"].value == "true"
    assert schema_fields({"type": "object"}) == []


def test_the_page_shows_the_production_version_by_default(client, world):
    client.force_login(world["alice"])
    html = client.get(PAGE).content.decode()
    assert '<option value="1" selected>v1 (production)</option>' in html
    assert 'data-var="text" data-kind="string"' in html and "What to classify" in html
    assert 'data-var="tone"' not in html  # v2's fields only when v2 is picked
    assert 'data-testid="output-a"' in html and 'data-testid="output-b"' not in html
    assert 'id="pg-run"' in html


def test_the_page_renders_the_picked_versions_form_and_compare_pane(client, world):
    client.force_login(world["alice"])
    html = client.get(PAGE, {"version": 2, "compare": 1}).content.decode()
    assert '<option value="2" selected>v2</option>' in html
    assert 'data-var="tone" data-kind="enum" required' in html
    assert '<option value="&quot;casual&quot;">casual</option>' in html
    assert 'data-var="count" data-kind="integer" step="1" value="" min="1" max="5"' in html
    assert 'type="checkbox" id="var-4" data-var="strict" data-kind="boolean" checked' in html
    assert '<textarea id="var-5" data-var="tags" data-kind="json"' in html
    assert 'type="text" id="var-6" data-var="title" data-kind="string" value="" maxlength="80"' in (
        html
    )
    assert 'data-testid="output-b"' in html and 'data-testid="metrics-b"' in html


def test_a_viewer_sees_the_page_without_a_run_button(client, world):
    client.force_login(world["victor"])
    response = client.get(PAGE)
    assert response.status_code == 200
    assert 'id="pg-run"' not in response.content.decode()


def test_strangers_get_404_for_the_page(client, world):
    client.force_login(world["mallory"])
    assert client.get(PAGE).status_code == 404


# --- the run ---------------------------------------------------------------------------


def test_a_run_streams_deltas_then_done_and_charges_the_tenant(
    gateway, stored_usage, world, demo_models
):
    http = browser_of(gateway, world["alice"])
    response = http.post(RUN, json={"version": 1, "variables": {"text": "I love it"}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = sse(response.text)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text.endswith("You said: Text: I love it")
    name, done = events[-1]
    assert name == "done"
    assert done["output"] == text and done["version"] == 1
    assert done["request_id"] == response.headers["x-request-id"]
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    assert done["usage"]["total_tokens"] == (
        done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    assert done["usage"]["cost_usd"] is not None and done["latency_ms"] >= 0
    [event] = [e for e in stored_usage() if e.request_id == done["request_id"]]
    assert event.tenant_id == world["acme"].pk
    assert event.input_tokens == done["usage"]["input_tokens"]


def test_invalid_variables_answer_400_with_the_path(gateway, stored_usage, world, demo_models):
    http = browser_of(gateway, world["alice"])
    response = http.post(RUN, json={"version": 1, "variables": {"text": 5}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_variables" and response.headers["x-request-id"]
    assert [e["path"] for e in error["errors"]] == ["$.text"]
    missing = http.post(RUN, json={"version": 1, "variables": {}}).json()["error"]["errors"]
    assert missing == [{"path": "$", "message": "'text' is a required property"}]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"version": "one"}', b'{"version": 9, "variables": {}}'],
    ids=["bad-json", "not-an-object", "version-not-a-number", "unknown-version"],
)
def test_a_bad_body_or_unknown_version_is_400_json(gateway, world, body):
    http = browser_of(gateway, world["alice"])
    response = http.post(RUN, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_viewer_may_not_run_and_nothing_is_charged(gateway, stored_usage, world, demo_models):
    http = browser_of(gateway, world["victor"])
    response = http.post(RUN, json={"version": 1, "variables": {"text": "hi"}})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert stored_usage() == []


def test_strangers_and_anonymous_callers_are_refused(gateway, world, demo_models):
    stranger = browser_of(gateway, world["mallory"])
    body = {"version": 1, "variables": {"text": "hi"}}
    assert stranger.post(RUN, json=body).status_code == 404
    anonymous = httpx.Client(base_url=gateway.base_url, timeout=30)
    anonymous.get("/accounts/login/")
    token = anonymous.cookies["csrftoken"]
    assert anonymous.post(RUN, json=body, headers={"X-CSRFToken": token}).status_code == 401


def test_a_run_without_the_csrf_token_is_refused(gateway, world, demo_models):
    http = browser_of(gateway, world["alice"])
    del http.headers["X-CSRFToken"]
    assert http.post(RUN, json={"version": 1, "variables": {"text": "hi"}}).status_code == 403

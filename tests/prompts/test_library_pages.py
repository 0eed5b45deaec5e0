"""The prompt library's pages through the test client: prompts, versions, diffs, labels (the
rollback), publishing and chains, for a developer, a viewer and an outsider."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from gateway.models import LanguageModel
from portal import services
from portal.models import Membership, Product, Role
from portal.services import Actor
from prompts import services as library
from prompts.models import Chain, Prompt, PromptApi, PromptLabel

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
MESSAGES = [
    {"role": "system", "content": "Classify the sentiment."},
    {"role": "user", "content": "{{ text }}"},
]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw")


@pytest.fixture
def world():
    alice, dev, viewer, mallory = _user("alice"), _user("dev"), _user("viewer"), _user("mallory")
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=dev, tenant=a, role=Role.DEVELOPER)
    Membership.objects.create(user=viewer, tenant=a, role=Role.VIEWER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")
    prompt = library.prompt_create(tenant=a, slug="sentiment", name="Sentiment")
    return {"alice": alice, "dev": dev, "viewer": viewer, "mallory": mallory, "a": a, "b": b,
            "prompt": prompt}  # fmt: skip


def _as(client, user):
    client.force_login(user)
    return client


def _url(name: str, **kwargs) -> str:
    return reverse(f"prompts:{name}", kwargs={"slug": "tenant-a", **kwargs})


def _version(prompt, **changes):
    fields = {"messages": MESSAGES, "model": "demo-chat", "input_schema": SCHEMA} | changes
    return library.version_create(prompt=prompt, **fields)


def _version_form(**changes) -> dict:
    form = {
        "messages": json.dumps(MESSAGES),
        "model": "demo-chat",
        "parameters": '{"temperature": 0.2}',
        "input_schema": json.dumps(SCHEMA),
        "output_format": "text",
        "output_schema": "",
        "changelog": "first cut",
    }
    return form | changes


# --- prompts ---------------------------------------------------------------------------


def test_a_developer_creates_a_prompt(client, world):
    response = _as(client, world["dev"]).post(
        _url("list"),
        {"slug": "summary", "name": "Summary", "description": "Sums up", "tags": "text, short"},
    )

    prompt = Prompt.objects.get(tenant=world["a"], slug="summary")
    assert response.status_code == 302
    assert response["Location"] == _url("version_new", prompt="summary")
    assert (prompt.name, prompt.tags) == ("Summary", ["text", "short"])
    listing = client.get(_url("list"))
    assert listing.status_code == 200
    assert b"Summary" in listing.content and b"short" in listing.content


def test_a_taken_prompt_slug_is_a_form_error(client, world):
    response = _as(client, world["dev"]).post(_url("list"), {"slug": "sentiment", "name": "Again"})

    assert response.status_code == 400
    assert b"already has a prompt" in response.content
    assert Prompt.objects.filter(tenant=world["a"]).count() == 1


def test_the_prompt_page_lists_versions_labels_and_links(client, world):
    prompt = world["prompt"]
    first = _version(prompt, changelog="the very first")
    library.label_set(prompt=prompt, name="production", version=first)

    response = _as(client, world["viewer"]).get(_url("detail", prompt="sentiment"))

    body = response.content.decode()
    assert response.status_code == 200
    assert "the very first" in body
    assert _url("version", prompt="sentiment", number=1) in body
    assert _url("playground", prompt="sentiment") in body
    assert _url("experiments", prompt="sentiment") in body
    assert 'id="label-form"' not in body  # a viewer cannot move labels


def test_every_page_renders_for_the_owner(client, world):
    prompt = world["prompt"]
    library.label_set(prompt=prompt, name="production", version=_version(prompt))
    _as(client, world["alice"]).post(_url("chains"), {"slug": "triage", "steps": _steps()})

    pages = {
        name: client.get(_url(name, **kwargs))
        for name, kwargs in [
            ("list", {}),
            ("detail", {"prompt": "sentiment"}),
            ("version_new", {"prompt": "sentiment"}),
            ("version", {"prompt": "sentiment", "number": 1}),
            ("publish", {"prompt": "sentiment"}),
            ("chains", {}),
            ("chain", {"chain": "triage"}),
        ]
    }

    assert {name: r.status_code for name, r in pages.items()} == dict.fromkeys(pages, 200)
    assert b'id="label-form"' in pages["detail"].content
    assert b'id="publish-form"' in pages["publish"].content
    assert b'id="chain-publish-form"' in pages["chain"].content
    assert b'aria-current="page">Prompts<' in pages["detail"].content
    assert b'aria-current="page">Chains<' in pages["chain"].content


# --- versions --------------------------------------------------------------------------


def test_a_new_version_from_the_form(client, world):
    _version(world["prompt"])

    response = _as(client, world["dev"]).post(
        _url("version_new", prompt="sentiment"), _version_form(changelog="warmer")
    )

    version = world["prompt"].versions.get(number=2)
    assert response.status_code == 302
    assert response["Location"] == _url("version", prompt="sentiment", number=2)
    assert (version.changelog, version.parameters) == ("warmer", {"temperature": 0.2})
    assert version.author == world["dev"]


def test_the_new_version_form_starts_from_the_latest(client, world):
    _version(world["prompt"], model="the-latest-model")

    response = _as(client, world["dev"]).get(_url("version_new", prompt="sentiment"))

    assert response.status_code == 200
    assert b"the-latest-model" in response.content


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"messages": "[{"}, "Not valid JSON"),
        ({"messages": '{"role": "user"}'}, "Give a JSON list"),
        ({"parameters": "temperature=1"}, "Not valid JSON"),
        (
            {"messages": json.dumps([{"role": "user", "content": "{{ 7*7 }}"}])},
            "messages[0].content, line 1",
        ),
        ({"output_schema": '{"type": "object"}'}, "needs output_format json"),
    ],
    ids=["broken-json", "not-a-list", "broken-parameters", "bad-template", "schema-for-text"],
)
def test_a_bad_version_is_a_form_error(client, world, changes, error):
    response = _as(client, world["dev"]).post(
        _url("version_new", prompt="sentiment"), _version_form(**changes)
    )

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not world["prompt"].versions.exists()


def test_the_diff_marks_added_and_removed_lines(client, world):
    _version(world["prompt"], model="old-model")
    _version(world["prompt"], model="new-model")

    response = _as(client, world["viewer"]).get(
        _url("version", prompt="sentiment", number=2) + "?against=1"
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert '<span class="diff-add">+  &quot;model&quot;: &quot;new-model&quot;,</span>' in body
    assert '<span class="diff-del">-  &quot;model&quot;: &quot;old-model&quot;,</span>' in body


def test_a_diff_against_a_missing_version_is_a_message(client, world):
    _version(world["prompt"])

    response = _as(client, world["viewer"]).get(
        _url("version", prompt="sentiment", number=1) + "?against=x9"
    )

    assert response.status_code == 200
    assert b"no other version" in response.content
    assert b'<pre class="diff' not in response.content


# --- labels ----------------------------------------------------------------------------


def test_moving_a_label_back_is_the_rollback(client, world):
    prompt = world["prompt"]
    first, second = _version(prompt), _version(prompt, model="gpt-4o")
    library.label_set(prompt=prompt, name="production", version=second)

    response = _as(client, world["dev"]).post(
        _url("label_set", prompt="sentiment"), {"name": "production", "version": "1"}
    )

    assert response.status_code == 302
    assert PromptLabel.objects.get(prompt=prompt, name="production").version == first


def test_moving_a_label_with_htmx_returns_the_versions(client, world):
    prompt = world["prompt"]
    _version(prompt), _version(prompt)

    response = _as(client, world["dev"]).post(
        _url("label_set", prompt="sentiment"), {"name": "staging", "version": "2"}, **HTMX
    )

    assert response.status_code == 200
    assert b'id="library-versions"' in response.content
    assert PromptLabel.objects.get(prompt=prompt, name="staging").version.number == 2


def test_a_label_to_a_missing_version_is_refused(client, world):
    _version(world["prompt"])

    response = _as(client, world["dev"]).post(
        _url("label_set", prompt="sentiment"), {"name": "production", "version": "7"}, **HTMX
    )

    assert response.status_code == 400
    assert not PromptLabel.objects.exists()
    plain = client.post(
        _url("label_set", prompt="sentiment"), {"name": "Not A Slug", "version": "1"}
    )
    assert plain.status_code == 302
    assert b"The label was not moved" in client.get(plain["Location"]).content
    assert not PromptLabel.objects.exists()


# --- who may do what ---------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_write(client, world):
    prompt = world["prompt"]
    first = _version(prompt)
    library.label_set(prompt=prompt, name="production", version=first)
    _as(client, world["viewer"])

    assert client.get(_url("list")).status_code == 200
    writes = [
        client.post(_url("list"), {"slug": "mine", "name": "Mine"}),
        client.get(_url("version_new", prompt="sentiment")),
        client.post(_url("version_new", prompt="sentiment"), _version_form()),
        client.post(_url("label_set", prompt="sentiment"), {"name": "staging", "version": "1"}),
        client.post(_url("publish", prompt="sentiment"), {"slug": "s", "name": "S",
                                                           "label": "production",
                                                           "visibility": "public"}),
        client.post(_url("chains"), {"slug": "c", "steps": "[]"}),
    ]  # fmt: skip

    assert [r.status_code for r in writes] == [403] * len(writes)
    assert list(Prompt.objects.values_list("slug", flat=True)) == ["sentiment"]
    assert prompt.versions.count() == 1
    assert list(prompt.labels.values_list("name", flat=True)) == ["production"]
    assert not PromptApi.objects.exists()


def test_another_tenants_user_sees_nothing(client, world):
    _version(world["prompt"])
    _as(client, world["mallory"])

    responses = [
        client.get(_url("list")),
        client.get(_url("detail", prompt="sentiment")),
        client.get(_url("version", prompt="sentiment", number=1)),
        client.post(_url("list"), {"slug": "stolen", "name": "Stolen"}),
        client.post(_url("label_set", prompt="sentiment"), {"name": "x", "version": "1"}),
        client.get(_url("chains")),
    ]

    assert [r.status_code for r in responses] == [404] * len(responses)
    assert not Prompt.objects.filter(slug="stolen").exists()
    assert not PromptLabel.objects.exists()


def test_a_prompt_of_another_tenant_is_not_found(client, world):
    library.prompt_create(tenant=world["b"], slug="theirs", name="Theirs")

    response = _as(client, world["dev"]).get(_url("detail", prompt="theirs"))

    assert response.status_code == 404


# --- publishing --------------------------------------------------------------------------


def test_publishing_creates_a_prompt_product_and_api(client, world):
    prompt = world["prompt"]
    library.label_set(prompt=prompt, name="production", version=_version(prompt))

    response = _as(client, world["alice"]).post(
        _url("publish", prompt="sentiment"),
        {"slug": "sentiment-api", "name": "Sentiment API", "label": "production",
         "visibility": "public", "approval_required": "on"},
    )  # fmt: skip

    api = PromptApi.objects.get(tenant=world["a"], slug="sentiment-api")
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "sentiment-api"}
    )
    assert (api.prompt, api.label) == (prompt, "production")
    assert api.product.kind == Product.Kind.PROMPT
    assert api.product.approval_required is True
    detail = client.get(_url("detail", prompt="sentiment"))
    assert b"/api/p/tenant-a/sentiment-api" in detail.content


def test_publishing_a_taken_slug_is_a_form_error(client, world):
    prompt = world["prompt"]
    library.label_set(prompt=prompt, name="production", version=_version(prompt))
    form = {"slug": "sentiment", "name": "S", "label": "production", "visibility": "public"}
    _as(client, world["alice"]).post(_url("publish", prompt="sentiment"), form)

    response = client.post(_url("publish", prompt="sentiment"), form)

    assert response.status_code == 400
    assert b"already publishes an API" in response.content
    assert PromptApi.objects.count() == 1


def test_a_developer_cannot_publish_a_product(client, world):
    prompt = world["prompt"]
    library.label_set(prompt=prompt, name="production", version=_version(prompt))
    form = {"slug": "sentiment", "name": "S", "label": "production", "visibility": "public"}
    _as(client, world["dev"])

    page, post = (
        client.get(_url("publish", prompt="sentiment")),
        client.post(_url("publish", prompt="sentiment"), form),
    )

    assert (page.status_code, post.status_code) == (403, 403)
    assert not PromptApi.objects.exists()
    assert not Product.objects.filter(kind=Product.Kind.PROMPT).exists()


# --- chains ------------------------------------------------------------------------------


def _steps(**changes) -> str:
    step = {"name": "classify", "prompt": "sentiment", "version": 1,
            "variables": {"text": "{{ input.text }}"}} | changes  # fmt: skip
    return json.dumps([step])


def test_a_chain_is_created_and_published(client, world):
    _version(world["prompt"])
    _as(client, world["dev"])

    created = client.post(
        _url("chains"), {"slug": "triage", "name": "Triage", "input_schema": "", "steps": _steps()}
    )
    published = _as(client, world["alice"]).post(
        _url("chain", chain="triage"),
        {"action": "publish", "publish-slug": "triage", "publish-name": "Triage API",
         "publish-visibility": "private"},
    )  # fmt: skip

    chain = Chain.objects.get(tenant=world["a"], slug="triage")
    assert created.status_code == 302
    assert created["Location"] == _url("chain", chain="triage")
    assert chain.steps[0]["prompt"] == "sentiment"
    assert published.status_code == 302
    api = PromptApi.objects.get(chain=chain)
    assert (api.product.kind, api.product.visibility) == ("prompt", "private")
    assert api.product.approval_required is False  # the unchecked box


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        (_steps(version=9), "steps[0].version must be a version number"),
        (_steps(prompt="nope"), "steps[0].prompt names no prompt"),
        (_steps(variables={"text": "{{ steps.later.output }}"}), "which does not come before"),
        ("[{", "Not valid JSON"),
    ],
    ids=["missing-version", "unknown-prompt", "forward-reference", "broken-json"],
)
def test_a_chain_with_a_bad_step_is_a_form_error(client, world, steps, error):
    _version(world["prompt"])

    response = _as(client, world["dev"]).post(_url("chains"), {"slug": "triage", "steps": steps})

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Chain.objects.exists()


def test_editing_a_chain_keeps_its_slug_and_shows_step_errors(client, world):
    _version(world["prompt"])
    _as(client, world["dev"]).post(_url("chains"), {"slug": "triage", "steps": _steps()})

    bad = client.post(
        _url("chain", chain="triage"),
        {"action": "save", "slug": "renamed", "name": "T", "steps": _steps(name="Bad Name")},
    )
    good = client.post(
        _url("chain", chain="triage"),
        {"action": "save", "slug": "renamed", "name": "Triage 2", "steps": _steps()},
    )

    assert bad.status_code == 400
    assert b"steps[0].name must be a unique lower-case identifier" in bad.content
    assert good.status_code == 302
    assert list(Chain.objects.values_list("slug", "name")) == [("triage", "Triage 2")]

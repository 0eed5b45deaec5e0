"""A published prompt API's OpenAPI document and docs page: the document mirrors the version's
schemas, the examples are real calls, and only those who may see the product may read them."""

from __future__ import annotations

import json

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from gateway.models import LanguageModel
from portal import services
from portal.models import Membership, Product, Role
from portal.services import Actor
from prompts import chains, openapi, publishing
from prompts import services as library
from prompts.views.docs import examples, variable_rows

pytestmark = pytest.mark.django_db

INPUT = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "description": "The text to classify."},
        "language": {"type": "string", "enum": ["en", "fr"]},
        "max_labels": {"type": "integer", "minimum": 1, "default": 3},
        "strict": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "examples": ["urgent"]}},
        "meta": {
            "type": "object",
            "properties": {"source": {"type": "string"}, "score": {"type": "number"}},
            "required": ["source"],
        },
    },
    "required": ["text", "strict"],
    "additionalProperties": False,
}
OUTPUT = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["label"],
}
MESSAGES = [{"role": "user", "content": "Classify: {{ text }}"}]


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw")


@pytest.fixture
def world():
    alice, bob, mallory = _user("alice"), _user("bob"), _user("mallory")
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=bob, tenant=a, role=Role.VIEWER)
    services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")
    owner = Actor(alice)
    prompt = library.prompt_create(actor=owner, tenant=a, slug="sentiment", name="Sentiment")
    library.version_create(actor=owner, prompt=prompt, messages=MESSAGES, model="demo-chat")
    v2 = library.version_create(
        actor=owner, prompt=prompt, messages=MESSAGES, model="demo-chat", input_schema=INPUT,
        output_format="json", output_schema=OUTPUT,
    )  # fmt: skip
    library.label_set(actor=owner, prompt=prompt, name="production", version=v2)
    text = library.prompt_create(actor=owner, tenant=a, slug="summary", name="Summary")
    t1 = library.version_create(actor=owner, prompt=text, messages=MESSAGES, model="demo-chat",
                                input_schema={"type": "object", "properties": {"text": {
                                    "type": "string"}}, "required": ["text"]})  # fmt: skip
    library.label_set(actor=owner, prompt=text, name="production", version=t1)

    def publish(slug, visibility=Product.Visibility.PUBLIC, **target):
        return publishing.api_publish(
            actor=owner, tenant=a, slug=slug, name=slug.replace("-", " ").title(),
            description=f"The {slug} API.", visibility=visibility, **target,
        )  # fmt: skip

    chain = chains.chain_save(
        actor=owner, tenant=a, slug="pipeline", name="Pipeline", input_schema=INPUT,
        steps=[{"name": "first", "prompt": "sentiment", "version": 2,
                "variables": {"text": "{{ input.text }}"}}],
    )  # fmt: skip
    return {
        "alice": alice,
        "bob": bob,
        "mallory": mallory,
        "v2": v2,
        "public": publish("sentiment", prompt=prompt, label="production"),
        "text": publish("summary", prompt=text, label="production"),
        "private": publish("secret", Product.Visibility.PRIVATE, prompt=prompt),
        "chain": publish("pipeline", chain=chain),
    }


def _as(client, user):
    client.force_login(user)
    return client


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document["components"][section][name]
    return node


def _ok(operation: dict) -> dict:
    return operation["responses"]["200"]["content"]["application/json"]["schema"]


# --- the document --------------------------------------------------------------------


def test_the_document_mirrors_the_versions_schemas(world):
    document = openapi.api_document(world["public"], "https://gw.example.com/")
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {
        "title": "Sentiment",
        "description": "The sentiment API.",
        "version": "2",
    }
    assert document["servers"] == [{"url": "https://gw.example.com"}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}

    call = document["paths"]["/api/p/tenant-a/sentiment"]["post"]
    body = call["requestBody"]["content"]["application/json"]
    assert body["schema"] == INPUT == world["v2"].input_schema
    assert _ok(call)["properties"]["output"]["properties"] == OUTPUT["properties"]
    assert _ok(call)["properties"]["output"]["required"] == ["label"]
    assert "text/event-stream" in call["responses"]["200"]["content"]
    assert set(call["responses"]) == {"200", "400", "401", "403", "404", "429", "502"}

    fixed = document["paths"]["/api/p/tenant-a/sentiment/v/{version}"]["post"]
    [version] = [p for p in fixed["parameters"] if p["in"] == "path"]
    assert (version["name"], version["schema"]["type"], version["required"]) == (
        "version",
        "integer",
        True,
    )


def test_the_400_answer_lists_the_invalid_fields(world):
    document = openapi.api_document(world["public"], "http://testserver/")
    call = document["paths"]["/api/p/tenant-a/sentiment"]["post"]
    bad = _resolve(document, call["responses"]["400"])
    schema = _resolve(document, bad["content"]["application/json"]["schema"])
    answer = {
        "error": {
            "message": "'text' is a required property",
            "type": "invalid_request_error",
            "code": "invalid_variables",
            "param": None,
            "errors": [{"path": "$.text", "message": "'text' is a required property"}],
        }
    }
    jsonschema.validate(answer, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error": {**answer["error"], "errors": [{"path": 1}]}}, schema)


def test_text_prompts_answer_a_string(world):
    document = openapi.api_document(world["text"], "http://testserver/")
    call = document["paths"]["/api/p/tenant-a/summary"]["post"]
    assert _ok(call)["properties"]["output"]["type"] == "string"
    assert document["info"]["version"] == "1"


def test_chains_have_no_fixed_version_path(world):
    document = openapi.api_document(world["chain"], "http://testserver/")
    assert "/api/p/tenant-a/pipeline" in document["paths"]
    assert not any("/v/" in path for path in document["paths"])
    call = document["paths"]["/api/p/tenant-a/pipeline"]["post"]
    assert call["requestBody"]["content"]["application/json"]["schema"] == INPUT
    assert "steps" in _ok(call)["required"]
    # and prompts do have it
    prompt_paths = openapi.api_document(world["public"], "http://testserver/")["paths"]
    assert "/api/p/tenant-a/sentiment/v/{version}" in prompt_paths


def test_the_document_passes_the_openapi_31_validator(world):
    validator = pytest.importorskip("openapi_spec_validator")
    for api in ("public", "text", "chain"):
        validator.validate(openapi.api_document(world[api], "http://testserver/"))


# --- example variables ---------------------------------------------------------------


def test_the_example_body_validates_against_the_input_schema(world):
    example = openapi.example_variables(INPUT)
    jsonschema.validate(example, INPUT)
    assert list(example) == ["text", "strict", "language", "max_labels", "meta", "tags"]
    assert example == {
        "text": "…",
        "language": "en",
        "max_labels": 3,
        "strict": True,
        "tags": ["urgent"],
        "meta": {"source": "…", "score": 0.0},
    }
    document = openapi.api_document(world["public"], "http://testserver/")
    body = document["paths"]["/api/p/tenant-a/sentiment"]["post"]["requestBody"]
    assert body["content"]["application/json"]["example"] == example


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "examples": ["Paris"], "default": "x"}, "Paris"),
        ({"type": "string", "default": "hello"}, "hello"),
        ({"type": "string", "minLength": 3}, "………"),
        ({"type": "integer", "minimum": 5}, 5),
        ({"type": "number"}, 0.0),
        ({"type": ["null", "boolean"]}, True),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [0, 0]),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 0),
    ],
    ids=[
        "examples-first",
        "default",
        "min-length",
        "minimum",
        "number",
        "nullable",
        "min-items",
        "any-of",
    ],  # fmt: skip
)
def test_example_values(schema, expected):
    value = openapi.example_value(schema)
    assert value == expected and type(value) is type(expected)
    jsonschema.validate(value, schema)


def test_an_example_body_is_always_an_object():
    assert openapi.example_variables({"type": "string"}) == {}
    assert openapi.example_variables({}) == {}


# --- the page and the JSON -----------------------------------------------------------


def test_the_docs_page_shows_real_calls(client, world):
    url = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "sentiment"})
    page = _as(client, world["mallory"]).get(url)  # another tenant: a public product
    assert page.status_code == 200
    body = page.content.decode()
    endpoint = "http://testserver/api/p/tenant-a/sentiment"
    assert f"curl {endpoint} \\" in body
    assert "Authorization: Bearer $WAYSTATION_API_KEY" in body
    assert (
        "&#x27;{&quot;text&quot;: &quot;…&quot;, &quot;strict&quot;: true, &quot;language&quot;"
        in body
    )
    assert f"curl -N {endpoint}" in body and "Accept: text/event-stream" in body
    assert "import httpx" in body and "openai" not in body.lower()
    assert f"fetch(&quot;{endpoint}&quot;" in body
    assert "curl http://testserver/api/v1/feedback" in body
    assert f"POST {endpoint}/v/{{version}}" in body
    openapi_url = reverse("prompts:api_openapi", kwargs={"tenant": "tenant-a", "api": "sentiment"})
    assert f'href="{openapi_url}"' in body
    subscribe = reverse("portal:product_detail", args=[world["public"].product.slug])
    assert f'id="subscribe-link" href="{subscribe}"' in body
    assert "<code>text</code>" in body and "The text to classify." in body
    assert "string (one of: &quot;en&quot;, &quot;fr&quot;)" in body
    assert 'id="output-schema"' in body and "positive" in body


def test_the_chain_docs_page_has_no_fixed_version(client, world):
    url = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "pipeline"})
    body = _as(client, world["alice"]).get(url).content.decode()
    assert "POST http://testserver/api/p/tenant-a/pipeline</code>" in body
    assert "/v/{version}" not in body and "last step" in body


def test_openapi_json_is_served_to_anyone_for_a_public_product(client, world):
    url = reverse("prompts:api_openapi", kwargs={"tenant": "tenant-a", "api": "sentiment"})
    response = client.get(url)  # not even logged in
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    document = json.loads(response.content)
    assert document["servers"] == [{"url": "http://testserver"}]
    assert "/api/p/tenant-a/sentiment" in document["paths"]


def test_private_docs_are_for_the_owner_tenant_only(client, world):
    page = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "secret"})
    doc = reverse("prompts:api_openapi", kwargs={"tenant": "tenant-a", "api": "secret"})
    assert client.get(doc).status_code == 404  # anonymous
    mallory = _as(client, world["mallory"])
    assert mallory.get(page).status_code == 404
    assert mallory.get(doc).status_code == 404
    bob = _as(client, world["bob"])  # a viewer of the owner tenant
    assert bob.get(page).status_code == 200
    assert bob.get(doc).status_code == 200


def test_retired_and_unknown_apis_are_404(client, world):
    product = world["public"].product
    product.status = Product.Status.RETIRED
    product.save(update_fields=["status"])
    alice = _as(client, world["alice"])
    for tenant, api in [("tenant-a", "sentiment"), ("tenant-a", "nope"), ("tenant-x", "summary")]:
        for name in ("prompts:api_docs", "prompts:api_openapi"):
            url = reverse(name, kwargs={"tenant": tenant, "api": api})
            assert alice.get(url).status_code == 404, (name, tenant, api)
    live = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "summary"})
    assert alice.get(live).status_code == 200


def test_the_docs_page_needs_a_login(client, world):
    url = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "sentiment"})
    response = client.get(url)
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_product_page_links_to_the_docs(client, world):
    product_url = reverse("portal:product_detail", args=[world["public"].product.slug])
    body = _as(client, world["mallory"]).get(product_url).content.decode()
    docs = reverse("prompts:api_docs", kwargs={"tenant": "tenant-a", "api": "sentiment"})
    assert 'id="prompt-api"' in body and f'href="{docs}"' in body
    assert "<code>POST /api/p/tenant-a/sentiment</code>" in body
    plain = services.product_create(
        actor=Actor(world["alice"]), owner=world["public"].tenant, name="Chat", slug="chat",
        models=["demo-chat"], status=Product.Status.PUBLISHED,
    )  # fmt: skip
    page = client.get(reverse("portal:product_detail", args=[plain.slug])).content.decode()
    assert 'id="prompt-api"' not in page


# --- helpers -------------------------------------------------------------------------


def test_variable_rows_and_quoting():
    rows = variable_rows(INPUT)
    assert rows[0] == {
        "name": "text",
        "type": "string",
        "required": True,
        "description": "The text to classify.",
    }
    assert [r["name"] for r in rows] == ["text", "strict", "language", "max_labels", "meta", "tags"]
    assert [r["type"] for r in rows[1:]] == [
        "boolean",
        'string (one of: "en", "fr")',
        "integer",
        "object",
        "array of string",
    ]
    calls = examples(url="http://x/api/p/t/a", feedback_url="http://x/api/v1/feedback",
                     body={"text": "it's"})  # fmt: skip
    assert "-d '{\"text\": \"it'\\''s\"}'" in calls["curl"]
    assert "json={'text': \"it's\"}" in calls["python"]

"""Response cache policies and purges through the management API (/api/v1/): who may set
what, input checks (400 naming the field), audit, and a purge that empties the real cache of
the running gateway."""

from __future__ import annotations

from types import SimpleNamespace

import openai
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from gateway.cache.policy import MAX_TTL_SECONDS
from gateway.models import CachePolicy, LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Product, Role
from portal.services import Actor
from tests.gateway.helpers import apply_yaml, new_key


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def make_user(name, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", **extra)


def as_(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def cache_events():
    return list(
        AuditEvent.objects.filter(action__startswith="cache")
        .order_by("id")
        .values_list("action", "actor__username", "tenant__slug")
    )


def make_world():
    """alice owns A (adam admin, bob developer); mallory owns B; the operator is staff.
    A has a private product, B a public one and a private one; the operator a public one."""
    alice, adam, bob = make_user("alice"), make_user("adam"), make_user("bob")
    mallory, operator = make_user("mallory"), make_user("operator", is_staff=True)
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=adam, tenant=a, role=Role.ADMIN)
    Membership.objects.create(user=bob, tenant=a, role=Role.DEVELOPER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")
    LanguageModel.objects.get_or_create(name="other-chat")
    LanguageModel.objects.get_or_create(name="demo-embed", defaults={"mode": "embedding"})
    LanguageModel.objects.get_or_create(
        name="old-embed", defaults={"mode": "embedding", "enabled": False}
    )

    def product(actor, owner, slug, visibility=Product.Visibility.PUBLIC):
        return services.product_create(
            actor=Actor(actor),
            owner=owner,
            name=slug.replace("-", " ").title(),
            slug=slug,
            models=["demo-chat"],
            visibility=visibility,
            status=Product.Status.PUBLISHED,
        )

    return SimpleNamespace(
        alice=alice,
        adam=adam,
        bob=bob,
        mallory=mallory,
        operator=operator,
        a=a,
        b=b,
        a_product=product(alice, a, "a-private", Product.Visibility.PRIVATE),
        b_public=product(mallory, b, "b-public"),
        b_private=product(mallory, b, "b-private", Product.Visibility.PRIVATE),
        open_product=product(operator, None, "open-chat"),
    )


@pytest.fixture
def w(db):
    return make_world()


# --- setting, changing and removing ---------------------------------------------------


def test_a_tenant_admin_sets_changes_and_removes_the_policy_of_an_own_product(w):
    adam = as_(w.adam)
    body = {
        "product": "a-private",
        "model_name": "demo-chat",
        "mode": "semantic",
        "cacheable": "always",
        "scope": "key",
        "ttl_seconds": 600,
        "similarity_threshold": 0.9,
        "hit_price_usd": "0.0005",
    }
    created = adam.post(url("cache-policies"), body, format="json")
    assert created.status_code == 201, created.data
    data = created.data
    assert (data["product"], data["model_name"], data["mode"]) == (
        "a-private",
        "demo-chat",
        "semantic",
    )
    assert (data["cacheable"], data["scope"], data["ttl_seconds"]) == ("always", "key", 600)
    assert data["similarity_threshold"] == 0.9 and data["hit_price_usd"] == "0.000500"
    assert data["from_config"] is False and data["max_entries"] == 10_000
    policy = CachePolicy.objects.get(pk=data["id"])
    assert policy.product == w.a_product and policy.hit_price_usd * 10_000 == 5

    # the same (product, model) again changes it; fields left out keep their values
    again = adam.post(
        url("cache-policies"),
        {"product": "a-private", "model_name": "demo-chat", "ttl_seconds": 60},
        format="json",
    )
    assert again.status_code == 200 and again.data["id"] == data["id"]
    assert again.data["ttl_seconds"] == 60 and again.data["mode"] == "semantic"

    patched = as_(w.alice).patch(
        url("cache-policy", id=data["id"]),
        {"mode": "exact", "similarity_threshold": None, "hit_price_usd": None},
        format="json",
    )
    assert patched.status_code == 200, patched.data
    assert patched.data["mode"] == "exact" and patched.data["similarity_threshold"] is None
    assert patched.data["hit_price_usd"] is None and patched.data["scope"] == "key"

    assert adam.get(url("cache-policy", id=data["id"])).data["ttl_seconds"] == 60
    assert adam.delete(url("cache-policy", id=data["id"])).status_code == 204
    assert not CachePolicy.objects.filter(pk=data["id"]).exists()
    assert adam.get(url("cache-policy", id=data["id"])).status_code == 404

    assert cache_events() == [
        ("cache_policy.created", "adam", "tenant-a"),
        ("cache_policy.changed", "adam", "tenant-a"),
        ("cache_policy.changed", "alice", "tenant-a"),
        ("cache_policy.deleted", "adam", "tenant-a"),
    ]
    event = AuditEvent.objects.get(action="cache_policy.created")
    assert event.target_type == "CachePolicy" and event.target_id == str(data["id"])
    assert event.data["product"] == "a-private" and "mode" in event.data["fields"]


def test_a_product_wide_policy_needs_no_model(w):
    created = as_(w.alice).post(url("cache-policies"), {"product": "a-private", "mode": "off"})
    assert created.status_code == 201, created.data
    assert created.data["model_name"] == "" and created.data["mode"] == "off"


def test_a_developer_reads_but_may_not_set_change_or_remove(w):
    policy = services.cache_policy_set(actor=Actor(w.alice), product=w.a_product, mode="exact")
    events = cache_events()
    bob = as_(w.bob)
    assert bob.get(url("cache-policy", id=policy.pk)).status_code == 200
    listed = {p["id"] for p in bob.get(url("cache-policies")).data["results"]}
    assert policy.pk in listed

    denied = bob.post(url("cache-policies"), {"product": "a-private", "mode": "off"})
    assert denied.status_code == 403 and "detail" in denied.data
    assert bob.patch(url("cache-policy", id=policy.pk), {"mode": "off"}).status_code == 403
    assert bob.delete(url("cache-policy", id=policy.pk)).status_code == 403
    policy.refresh_from_db()
    assert policy.mode == "exact" and cache_events() == events


def test_another_tenants_products_and_policies(w):
    a_policy = services.cache_policy_set(actor=Actor(w.alice), product=w.a_product)
    b_policy = services.cache_policy_set(actor=Actor(w.mallory), product=w.b_private)
    public = services.cache_policy_set(actor=Actor(w.mallory), product=w.b_public)
    events = cache_events()
    mallory, alice = as_(w.mallory), as_(w.alice)

    # A's private product and policy don't exist for mallory
    assert mallory.post(url("cache-policies"), {"product": "a-private"}).status_code == 404
    assert mallory.get(url("cache-policy", id=a_policy.pk)).status_code == 404
    assert mallory.patch(url("cache-policy", id=a_policy.pk), {"mode": "off"}).status_code == 404
    assert mallory.delete(url("cache-policy", id=a_policy.pk)).status_code == 404
    # B's public product is visible to alice, but its cache is B's business
    assert (
        alice.post(url("cache-policies"), {"product": "b-public", "mode": "off"}).status_code == 403
    )
    assert alice.get(url("cache-policy", id=public.pk)).status_code == 404
    assert alice.get(url("cache-policy", id=b_policy.pk)).status_code == 404
    assert mallory.post(url("cache-policies"), {"product": "no-such-product"}).status_code == 404

    assert {p["id"] for p in mallory.get(url("cache-policies")).data["results"]} == {
        b_policy.pk,
        public.pk,
    }
    assert {p["id"] for p in alice.get(url("cache-policies")).data["results"]} == {a_policy.pk}
    assert as_(w.operator).get(url("cache-policies")).data["count"] == 3
    a_policy.refresh_from_db()
    assert a_policy.mode == "exact" and cache_events() == events


def test_operator_policies_are_the_operators_and_readable_by_all(w):
    alice, operator = as_(w.alice), as_(w.operator)
    body = {"model_name": "demo-chat", "mode": "semantic", "embedding_model": "demo-embed"}
    assert alice.post(url("cache-policies"), body).status_code == 403
    assert (
        alice.post(
            url("cache-policies"), {"product": None, "mode": "off"}, format="json"
        ).status_code
        == 403
    )
    assert (
        alice.post(url("cache-policies"), {"product": "open-chat", "mode": "off"}).status_code
        == 403
    )
    assert not CachePolicy.objects.exists()

    wide = operator.post(url("cache-policies"), body)
    assert wide.status_code == 201, wide.data
    assert wide.data["product"] is None and wide.data["embedding_model"] == "demo-embed"
    default = operator.post(url("cache-policies"), {"ttl_seconds": 120})
    assert default.status_code == 201 and default.data["model_name"] == ""
    on_product = operator.post(url("cache-policies"), {"product": "open-chat", "mode": "off"})
    assert on_product.status_code == 201 and on_product.data["product"] == "open-chat"

    # everyone reads them, no one else changes them
    seen = {p["id"] for p in alice.get(url("cache-policies")).data["results"]}
    assert seen == {wide.data["id"], default.data["id"], on_product.data["id"]}
    assert alice.patch(url("cache-policy", id=wide.data["id"]), {"mode": "off"}).status_code == 403
    assert alice.delete(url("cache-policy", id=on_product.data["id"])).status_code == 403
    assert as_(w.operator).delete(url("cache-policy", id=default.data["id"])).status_code == 204
    assert [e for e in cache_events() if e[1] == "operator"] == [
        ("cache_policy.created", "operator", None),
        ("cache_policy.created", "operator", None),
        ("cache_policy.created", "operator", None),
        ("cache_policy.deleted", "operator", None),
    ]


def test_a_policy_set_by_hand_is_no_longer_the_configs(w):
    CachePolicy.objects.create(model_name="demo-chat", from_config=True)
    policy = CachePolicy.objects.get()
    changed = as_(w.operator).patch(url("cache-policy", id=policy.pk), {"ttl_seconds": 5})
    assert changed.status_code == 200 and changed.data["from_config"] is False


# --- input checks ---------------------------------------------------------------------

BAD = [
    ({"mode": "fast"}, "mode"),
    ({"cacheable": "sometimes"}, "cacheable"),
    ({"scope": "world"}, "scope"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": MAX_TTL_SECONDS + 1}, "ttl_seconds"),
    ({"ttl_seconds": "soon"}, "ttl_seconds"),
    ({"similarity_threshold": 0}, "similarity_threshold"),
    ({"similarity_threshold": 1.5}, "similarity_threshold"),
    ({"similarity_threshold": "NaN"}, "similarity_threshold"),
    ({"similarity_threshold": "inf"}, "similarity_threshold"),
    ({"max_entries": 0}, "max_entries"),
    ({"max_entries": 1_000_001}, "max_entries"),
    ({"embedding_model": "demo-chat"}, "embedding_model"),
    ({"embedding_model": "old-embed"}, "embedding_model"),
    ({"embedding_model": "no-such-model"}, "embedding_model"),
    ({"hit_price_usd": "-1"}, "hit_price_usd"),
    ({"hit_price_usd": "1000"}, "hit_price_usd"),
    ({"hit_price_usd": "0.0000001"}, "hit_price_usd"),
    ({"hit_price_usd": "NaN"}, "hit_price_usd"),
    ({"hit_price_usd": "lots"}, "hit_price_usd"),
    ({"model_name": "other-chat"}, "model_name"),  # not one of the product's models
    ({"model_name": "x" * 201}, "model_name"),
    ({"product": "not a slug"}, "product"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f"{f}={b[f]!s:.12}" for b, f in BAD])
def test_bad_input_is_a_400_naming_the_field(w, body, field):
    response = as_(w.alice).post(
        url("cache-policies"), {"product": "a-private", **body}, format="json"
    )
    assert response.status_code == 400, response.data
    assert field in response.data, response.data
    assert not CachePolicy.objects.exists() and not cache_events()


def test_bad_changes_are_a_400_naming_the_field(w):
    policy = services.cache_policy_set(actor=Actor(w.alice), product=w.a_product, ttl_seconds=60)
    alice = as_(w.alice)
    path = url("cache-policy", id=policy.pk)
    for body, field in [
        ({"ttl_seconds": -5, "mode": "sometimes"}, "ttl_seconds"),
        ({"product": "b-public"}, "product"),
        ({"model_name": "demo-chat"}, "model_name"),
        ({"embedding_model": "old-embed"}, "embedding_model"),
    ]:
        response = alice.patch(path, body, format="json")
        assert response.status_code == 400 and field in response.data, (body, response.data)
    both = alice.patch(path, {"ttl_seconds": 0, "scope": "world"}, format="json")
    assert set(both.data) == {"ttl_seconds", "scope"}
    assert alice.patch(path, "[1, 2]", content_type="application/json").status_code == 400
    assert alice.patch(path, "{not json", content_type="application/json").status_code == 400
    policy.refresh_from_db()
    assert policy.ttl_seconds == 60


def test_an_operator_wide_policy_names_a_known_model(w):
    response = as_(w.operator).post(url("cache-policies"), {"model_name": "no-such-model"})
    assert response.status_code == 400 and "model_name" in response.data


def test_the_services_name_every_bad_field(w):
    with pytest.raises(services.PolicyInvalid) as caught:
        services.cache_policy_set(
            actor=Actor(w.alice),
            product=w.a_product,
            model_name="other-chat",
            ttl_seconds=True,
            similarity_threshold=float("nan"),
            hit_price_usd="1e3",
            colour="blue",
        )
    assert set(caught.value.errors) == {
        "model_name",
        "ttl_seconds",
        "similarity_threshold",
        "hit_price_usd",
        "colour",
    }
    assert "ttl_seconds" in str(caught.value)


# --- through the gateway --------------------------------------------------------------

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: chat
        price: {{input_per_mtok: 1000, output_per_mtok: 2000}}
        deployments: [{{provider: oai, model: gpt-up}}]
"""


@pytest.fixture
def served(gateway, openai_fake):
    """The gateway with one model `chat`, tenant `acme` (alice owner, bob developer) and
    mallory's tenant B, each with a key."""
    from gateway import catalog

    apply_yaml(CONFIG.format(url=openai_fake.base_url, key=openai_fake.api_key))
    catalog.invalidate()
    w = make_world()
    acme_key = new_key(tenant="acme")
    acme = services.tenant_get_or_create(slug="acme")
    Membership.objects.create(user=w.alice, tenant=acme, role=Role.OWNER)
    Membership.objects.create(user=w.bob, tenant=acme, role=Role.DEVELOPER)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=acme_key, max_retries=0)
    b_key = new_key(tenant=w.b.slug)
    b_client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=b_key, max_retries=0)
    return SimpleNamespace(w=w, acme=acme, client=client, b_client=b_client, fake=openai_fake)


def ask(client, text="Capital of France?", temperature=0):
    raw = client.chat.completions.with_raw_response.create(
        model="chat", temperature=temperature, messages=[{"role": "user", "content": text}]
    )
    return raw.headers.get("x-waystation-cache")


def test_a_purge_empties_the_tenants_cache_and_only_its(served):
    w = served.w
    assert ask(served.client) == "miss"
    assert ask(served.client) == "hit"
    assert ask(served.b_client) == "miss"
    assert ask(served.b_client) == "hit"

    # a developer may not; a stranger doesn't see the tenant
    assert as_(w.bob).post(url("cache-purge", slug="acme")).status_code == 403
    assert as_(w.mallory).post(url("cache-purge", slug="acme")).status_code == 404
    assert ask(served.client) == "hit"

    purged = as_(w.alice).post(url("cache-purge", slug="acme"))
    assert purged.status_code == 200, purged.data
    assert purged.data["removed"] >= 1
    assert ask(served.client) == "miss"
    assert ask(served.b_client) == "hit"  # B's answers stay
    assert len(served.fake.requests) == 3

    event = AuditEvent.objects.get(action="cache.purged")
    assert (event.actor, event.tenant) == (w.alice, served.acme)
    assert event.data == {"removed": purged.data["removed"]}
    again = as_(w.operator).post(url("cache-purge", slug="acme"))
    assert again.status_code == 200 and again.data["removed"] >= 1  # the last miss was saved


def test_an_operator_policy_set_through_the_api_reaches_the_gateway(served):
    from gateway import catalog

    assert ask(served.client, "Tell a joke", temperature=0.9) == "bypass"
    created = as_(served.w.operator).post(
        url("cache-policies"), {"model_name": "chat", "cacheable": "always"}
    )
    assert created.status_code == 201, created.data
    catalog.invalidate()  # rather than waiting for the next refresh
    assert ask(served.client, "Tell a joke", temperature=0.9) == "miss"
    assert ask(served.client, "Tell a joke", temperature=0.9) == "hit"

"""The response cache in the portal: a product's policy on its page, the operator's policies,
and a tenant's purge button (on the real cache store)."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.urls import reverse

from gateway.cache import service as response_cache
from gateway.models import CachePolicy, LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Product, Role
from portal.services import Actor

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _user(name: str, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw", **extra)


@pytest.fixture
def world():
    alice, bob, mallory = _user("alice"), _user("bob"), _user("mallory")
    operator = _user("operator", is_staff=True)
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=bob, tenant=a, role=Role.DEVELOPER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")
    LanguageModel.objects.get_or_create(name="demo-embed", defaults={"mode": "embedding"})

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

    return {
        "alice": alice,
        "bob": bob,
        "mallory": mallory,
        "operator": operator,
        "a": a,
        "b": b,
        "a_product": product(alice, a, "a-chat", Product.Visibility.PRIVATE),
        "a_public": product(alice, a, "a-public"),
        "open": product(operator, None, "open-chat"),
    }


def _as(client, user):
    client.force_login(user)
    return client


PRODUCT_FORM = {
    "model_name": "demo-chat",
    "mode": "semantic",
    "cacheable": "always",
    "scope": "user",
    "ttl_seconds": "900",
    "similarity_threshold": "0.92",
    "hit_price_usd": "0.0002",
}


# --- a product's policy --------------------------------------------------------------


def test_a_product_manager_sees_and_sets_the_policy_on_the_product_page(client, world):
    alice = _as(client, world["alice"])
    detail = alice.get(reverse("portal:product_detail", args=["a-chat"])).content.decode()
    cache_url = reverse("portal:product_cache", args=["a-chat"])
    assert 'id="response-cache"' in detail and f'hx-get="{cache_url}"' in detail

    section = alice.get(cache_url, **HTMX)
    assert section.status_code == 200
    body = section.content.decode()
    assert "<html" not in body and "has no cache policy of its own" in body
    assert 'action="/portal/catalog/a-chat/cache/save/"' in body
    assert 'value="exact" selected' in body  # a new policy starts from the default

    saved = alice.post(reverse("portal:product_cache_save", args=["a-chat"]), PRODUCT_FORM)
    assert saved.status_code == 302
    assert (
        saved["Location"] == reverse("portal:product_detail", args=["a-chat"]) + "#response-cache"
    )
    policy = CachePolicy.objects.get()
    assert (policy.product, policy.model_name, policy.mode) == (
        world["a_product"],
        "demo-chat",
        "semantic",
    )
    assert (policy.cacheable, policy.scope, policy.ttl_seconds) == ("always", "user", 900)
    assert policy.similarity_threshold == 0.92 and str(policy.hit_price_usd) == "0.000200"
    event = AuditEvent.objects.get(action="cache_policy.created")
    assert (event.actor, event.tenant, event.source_ip) == (world["alice"], world["a"], "127.0.0.1")

    page = alice.get(cache_url).content.decode()
    assert f'id="cache-policy-{policy.pk}"' in page and "Exact and semantic" in page
    assert "$0.0002" in page and "15 min" in page and "<html" in page
    # Change prefills the form with the policy
    change = alice.get(cache_url, {"policy": policy.pk}).content.decode()
    assert 'value="900"' in change and 'value="0.0002"' in change

    # saving the same model again changes it
    alice.post(
        reverse("portal:product_cache_save", args=["a-chat"]), {**PRODUCT_FORM, "mode": "off"}
    )
    policy.refresh_from_db()
    assert policy.mode == "off" and CachePolicy.objects.count() == 1
    assert AuditEvent.objects.filter(action="cache_policy.changed").count() == 1


def test_bad_input_shows_the_errors_and_saves_nothing(client, world):
    alice = _as(client, world["alice"])
    save = reverse("portal:product_cache_save", args=["a-chat"])
    for field, value, text in [
        ("ttl_seconds", "0", "greater than or equal to 1"),
        ("similarity_threshold", "1.5", "similarity_threshold must be a number above 0"),
        ("similarity_threshold", "0", "similarity_threshold must be a number above 0"),
        ("hit_price_usd", "-1", "greater than or equal to 0"),
        ("hit_price_usd", "5000", "hit_price_usd must be dollars per hit"),
        ("mode", "fast", "Select a valid choice"),
        ("model_name", "not-in-product", "Select a valid choice"),
    ]:
        response = alice.post(save, {**PRODUCT_FORM, field: value})
        assert response.status_code == 400, (field, value)
        assert text in response.content.decode(), (field, value)
    assert not CachePolicy.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="cache").exists()


def test_who_sees_and_who_sets_a_products_policy(client, world):
    policy = services.cache_policy_set(
        actor=Actor(world["alice"]), product=world["a_product"], mode="exact"
    )
    cache_url = reverse("portal:product_cache", args=["a-chat"])
    save = reverse("portal:product_cache_save", args=["a-chat"])
    remove = reverse("portal:cache_policy_remove", args=[policy.pk])

    bob = _as(client, world["bob"])  # a developer of A: reads it, can't change it
    page = bob.get(cache_url)
    assert page.status_code == 200
    assert f'id="cache-policy-{policy.pk}"' in page.content.decode()
    assert "Save cache policy" not in page.content.decode()
    assert bob.post(save, PRODUCT_FORM).status_code == 403
    assert bob.post(remove).status_code == 403

    mallory = _as(client, world["mallory"])
    assert mallory.get(cache_url).status_code == 404  # a private product of another tenant
    assert mallory.post(save, PRODUCT_FORM).status_code == 404
    assert mallory.post(remove).status_code == 404
    public = reverse("portal:product_cache", args=["a-public"])
    assert mallory.get(public).status_code == 403  # visible, but its cache is A's
    detail = mallory.get(reverse("portal:product_detail", args=["a-public"])).content.decode()
    assert 'id="response-cache"' not in detail
    # the operator's product: staff set it, tenants don't
    open_save = reverse("portal:product_cache_save", args=["open-chat"])
    assert mallory.post(open_save, PRODUCT_FORM).status_code == 403
    operator = _as(client, world["operator"])
    assert operator.post(open_save, PRODUCT_FORM).status_code == 302
    assert CachePolicy.objects.filter(product=world["open"]).exists()

    policy.refresh_from_db()
    assert policy.mode == "exact"
    alice = _as(client, world["alice"])
    removed = alice.post(remove)
    assert removed.status_code == 302 and removed["Location"].endswith("#response-cache")
    assert not CachePolicy.objects.filter(pk=policy.pk).exists()
    assert AuditEvent.objects.filter(action="cache_policy.deleted", actor=world["alice"]).exists()


# --- the operator's page -------------------------------------------------------------


def test_the_operator_sets_operator_wide_policies(client, world):
    alice = _as(client, world["alice"])
    assert alice.get(reverse("portal:cache")).status_code == 403
    assert alice.post(reverse("portal:cache_save"), PRODUCT_FORM).status_code == 403
    assert "Cache policies" not in alice.get(reverse("portal:dashboard")).content.decode()

    operator = _as(client, world["operator"])
    page = operator.get(reverse("portal:cache"))
    assert page.status_code == 200 and "No operator policies" in page.content.decode()
    assert 'href="/portal/cache/" aria-current="page"' in page.content.decode()
    form = {
        **PRODUCT_FORM,
        "model_name": "",
        "max_entries": "500",
        "embedding_model": "demo-embed",
    }
    saved = operator.post(reverse("portal:cache_save"), form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    policy = CachePolicy.objects.get()
    assert policy.product is None and policy.model_name == ""
    assert (policy.max_entries, policy.embedding_model) == (500, "demo-embed")
    event = AuditEvent.objects.get(action="cache_policy.created")
    assert event.tenant is None and event.actor == world["operator"]

    bad = operator.post(reverse("portal:cache_save"), {**form, "max_entries": "0"})
    assert bad.status_code == 400 and "greater than or equal to 1" in bad.content.decode()

    page = operator.get(reverse("portal:cache"), {"policy": policy.pk}).content.decode()
    assert f'id="cache-policy-{policy.pk}"' in page and 'value="500"' in page
    removed = operator.post(reverse("portal:cache_policy_remove", args=[policy.pk]))
    assert removed.status_code == 302 and removed["Location"] == reverse("portal:cache")
    assert not CachePolicy.objects.exists()


def test_the_operator_page_lists_the_policies_of_products(client, world):
    services.cache_policy_set(actor=Actor(world["alice"]), product=world["a_product"])
    page = _as(client, world["operator"]).get(reverse("portal:cache")).content.decode()
    assert "Policies of products" in page and "/portal/catalog/a-chat/cache/" in page


# --- a tenant's purge button ---------------------------------------------------------


@pytest.fixture
def cache_store(settings):
    """The real cache store (Redis when configured), under a key prefix of this test's own."""
    settings.GATEWAY_CACHE_KEY_PREFIX = f"wsc-test-{uuid.uuid4().hex[:8]}"
    response_cache.reset()
    yield response_cache.store()
    response_cache.reset()


def _put(store, key: str) -> None:
    async_to_sync(store.put)(key, b"answer", 60)


def _get(store, key: str):
    return async_to_sync(store.get_many)([key])[0]


def test_owners_purge_their_tenants_cached_answers(client, world, cache_store, settings):
    prefix = settings.GATEWAY_CACHE_KEY_PREFIX
    mine = [f"{prefix}:{world['a'].pk}:x:one", f"{prefix}:{world['a'].pk}:x:two"]
    theirs = f"{prefix}:{world['b'].pk}:x:one"
    for key in [*mine, theirs]:
        _put(cache_store, key)

    bob = _as(client, world["bob"])
    page = bob.get(reverse("portal:tenant_cache", args=["tenant-a"])).content.decode()
    assert "Only owners and admins purge the cache" in page and 'id="purge-form"' not in page
    purge = reverse("portal:tenant_cache_purge", args=["tenant-a"])
    assert bob.post(purge).status_code == 403
    assert _get(cache_store, mine[0]) == b"answer"
    mallory = _as(client, world["mallory"])
    assert mallory.post(purge).status_code == 404

    alice = _as(client, world["alice"])
    page = alice.get(reverse("portal:tenant_cache", args=["tenant-a"])).content.decode()
    assert 'id="purge-form"' in page and "Purge cached answers" in page
    assert 'aria-current="page">Cache</a>' in page
    done = alice.post(purge, follow=True)
    assert done.redirect_chain[-1][0] == reverse("portal:tenant_cache", args=["tenant-a"])
    assert "Purged the cached answers of Tenant A: 2 records." in done.content.decode()
    assert _get(cache_store, mine[0]) is None and _get(cache_store, mine[1]) is None
    assert _get(cache_store, theirs) == b"answer"
    event = AuditEvent.objects.get(action="cache.purged")
    assert (event.actor, event.tenant, event.data) == (world["alice"], world["a"], {"removed": 2})


def test_the_tenant_page_lists_the_policies_of_its_products(client, world):
    services.cache_policy_set(
        actor=Actor(world["alice"]), product=world["a_product"], model_name="demo-chat"
    )
    page = _as(client, world["bob"]).get(reverse("portal:tenant_cache", args=["tenant-a"]))
    body = page.content.decode()
    assert page.status_code == 200 and "A Chat" in body and "<code>demo-chat</code>" in body
    assert "/portal/catalog/a-public/#response-cache" not in body  # bob can't set one
    owner = _as(client, world["alice"]).get(reverse("portal:tenant_cache", args=["tenant-a"]))
    assert "/portal/catalog/a-public/#response-cache" in owner.content.decode()

"""Guardrail policies through the management API (/api/v1/): who may set what at which
scope, input checks (400 naming the problem), isolation (404), audit, and a policy that
takes effect at the running gateway."""

from __future__ import annotations

from types import SimpleNamespace

import openai
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from gateway.models import GuardrailPolicy, LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Product, Role
from portal.services import SYSTEM, Actor
from tests.gateway.helpers import apply_yaml, new_key

PII_BLOCK = [{"check": "pii", "stage": "input", "action": "block"}]


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def make_user(name, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", **extra)


def as_(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def guardrail_events():
    return list(
        AuditEvent.objects.filter(action__startswith="guardrail")
        .order_by("id")
        .values_list("action", "actor__username", "tenant__slug")
    )


def make_world():
    """alice owns A (adam admin, bob developer); mallory owns B; the operator is staff.
    A has a key and a private product; B a key and a public product; the operator a product."""
    alice, adam, bob = make_user("alice"), make_user("adam"), make_user("bob")
    mallory, operator = make_user("mallory"), make_user("operator", is_staff=True)
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=adam, tenant=a, role=Role.ADMIN)
    Membership.objects.create(user=bob, tenant=a, role=Role.DEVELOPER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")

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

    def key(tenant, name):
        return services.api_key_create(actor=SYSTEM, tenant=tenant, name=name).api_key

    return SimpleNamespace(
        alice=alice,
        adam=adam,
        bob=bob,
        mallory=mallory,
        operator=operator,
        a=a,
        b=b,
        a_key=key(a, "a-key"),
        b_key=key(b, "b-key"),
        a_product=product(alice, a, "a-private", Product.Visibility.PRIVATE),
        b_public=product(mallory, b, "b-public"),
        open_product=product(operator, None, "open-chat"),
    )


@pytest.fixture
def w(db):
    return make_world()


# --- setting, changing and removing ---------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "adam"])
def test_owners_and_admins_set_change_and_remove_the_tenants_policy(w, who):
    client = as_(getattr(w, who))
    body = {"scope": "tenant", "name": "a-pii", "tenant": "tenant-a", "checks": PII_BLOCK}
    created = client.post(url("guardrail-policies"), body, format="json")
    assert created.status_code == 201, created.data
    data = created.data
    assert (data["scope"], data["name"], data["tenant"]) == ("tenant", "a-pii", "tenant-a")
    assert data["product"] is None and data["api_key"] is None
    assert data["checks"] == PII_BLOCK and data["enabled"] is True
    assert data["from_config"] is False
    policy = GuardrailPolicy.objects.get(pk=data["id"])
    assert policy.tenant == w.a and policy.checks == PII_BLOCK

    # setting the same (scope, name) again changes it
    again = client.post(url("guardrail-policies"), {**body, "checks": "default"}, format="json")
    assert again.status_code == 200, again.data
    assert again.data["id"] == policy.pk and again.data["checks"] == "default"

    changed = client.patch(url("guardrail-policy", id=policy.pk), {"enabled": False}, format="json")
    assert changed.status_code == 200, changed.data
    assert changed.data["enabled"] is False and changed.data["checks"] == "default"
    read = client.get(url("guardrail-policy", id=policy.pk))
    assert read.status_code == 200 and read.data["enabled"] is False

    removed = client.delete(url("guardrail-policy", id=policy.pk))
    assert removed.status_code == 204
    assert not GuardrailPolicy.objects.filter(pk=policy.pk).exists()
    assert guardrail_events() == [
        ("guardrail_policy.created", who, "tenant-a"),
        ("guardrail_policy.changed", who, "tenant-a"),
        ("guardrail_policy.changed", who, "tenant-a"),
        ("guardrail_policy.deleted", who, "tenant-a"),
    ]
    event = AuditEvent.objects.filter(action="guardrail_policy.created").get()
    assert event.data["checks"] == PII_BLOCK and event.data["owner"] == "tenant-a"


def test_an_admin_sets_key_and_own_product_policies(w):
    adam = as_(w.adam)
    key = adam.post(
        url("guardrail-policies"),
        {"scope": "key", "name": "a-key-guard", "api_key": w.a_key.pk, "checks": "default"},
        format="json",
    )
    assert key.status_code == 201, key.data
    assert key.data["api_key"] == w.a_key.pk and key.data["tenant"] is None
    product = adam.post(
        url("guardrail-policies"),
        {"scope": "product", "name": "a-prod-guard", "product": "a-private", "checks": PII_BLOCK},
        format="json",
    )
    assert product.status_code == 201, product.data
    assert product.data["product"] == "a-private"
    listed = {p["name"] for p in adam.get(url("guardrail-policies")).data["results"]}
    assert listed == {"a-key-guard", "a-prod-guard"}
    assert [e[2] for e in guardrail_events()] == ["tenant-a", "tenant-a"]


def test_a_developer_reads_but_may_not_set_change_or_remove(w):
    policy = services.guardrail_policy_set(
        actor=Actor(w.alice), scope="tenant", name="a-guard", tenant=w.a, checks="default"
    )
    bob = as_(w.bob)
    assert bob.get(url("guardrail-policy", id=policy.pk)).status_code == 200
    body = {"scope": "tenant", "name": "bobs", "tenant": "tenant-a", "checks": PII_BLOCK}
    assert bob.post(url("guardrail-policies"), body, format="json").status_code == 403
    key = {"scope": "key", "name": "bobs", "api_key": w.a_key.pk, "checks": PII_BLOCK}
    assert bob.post(url("guardrail-policies"), key, format="json").status_code == 403
    patch = bob.patch(url("guardrail-policy", id=policy.pk), {"enabled": False}, format="json")
    assert patch.status_code == 403
    assert bob.delete(url("guardrail-policy", id=policy.pk)).status_code == 403
    policy.refresh_from_db()
    assert policy.enabled is True
    assert [e[0] for e in guardrail_events()] == ["guardrail_policy.created"]
    assert not GuardrailPolicy.objects.filter(name="bobs").exists()


def test_another_tenants_policies_tenant_and_keys_are_404(w):
    policy = services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="a-guard", tenant=w.a, checks="default"
    )
    mallory = as_(w.mallory)
    assert mallory.get(url("guardrail-policy", id=policy.pk)).status_code == 404
    patch = mallory.patch(url("guardrail-policy", id=policy.pk), {"enabled": False}, format="json")
    assert patch.status_code == 404
    assert mallory.delete(url("guardrail-policy", id=policy.pk)).status_code == 404
    for body in (
        {"scope": "tenant", "name": "x", "tenant": "tenant-a", "checks": PII_BLOCK},
        {"scope": "key", "name": "x", "api_key": w.a_key.pk, "checks": PII_BLOCK},
        {"scope": "product", "name": "x", "product": "a-private", "checks": PII_BLOCK},
    ):
        assert mallory.post(url("guardrail-policies"), body, format="json").status_code == 404
    assert mallory.get(url("guardrail-policies")).data["count"] == 0
    # a product she sees but does not own: 403
    visible = {"scope": "product", "name": "x", "product": "b-public", "checks": PII_BLOCK}
    assert as_(w.alice).post(url("guardrail-policies"), visible, format="json").status_code == 403
    # the operator's product: the operator's alone
    open_ = {"scope": "product", "name": "x", "product": "open-chat", "checks": PII_BLOCK}
    assert as_(w.alice).post(url("guardrail-policies"), open_, format="json").status_code == 403
    assert as_(w.operator).post(url("guardrail-policies"), open_, format="json").status_code == 201
    policy.refresh_from_db()
    assert policy.enabled is True


def test_operator_policies_are_the_operators_and_readable_by_members(w):
    body = {"scope": "operator", "name": "floor", "checks": "default"}
    assert as_(w.alice).post(url("guardrail-policies"), body, format="json").status_code == 403
    created = as_(w.operator).post(url("guardrail-policies"), body, format="json")
    assert created.status_code == 201, created.data
    policy_id = created.data["id"]
    alice = as_(w.alice)
    assert alice.get(url("guardrail-policy", id=policy_id)).status_code == 200
    patch = alice.patch(url("guardrail-policy", id=policy_id), {"enabled": False}, format="json")
    assert patch.status_code == 403
    assert alice.delete(url("guardrail-policy", id=policy_id)).status_code == 403
    assert guardrail_events() == [("guardrail_policy.created", "operator", None)]
    assert as_(w.operator).delete(url("guardrail-policy", id=policy_id)).status_code == 204


def test_a_name_of_another_owner_is_not_taken_over(w):
    services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="strict", tenant=w.b, checks="default"
    )
    body = {"scope": "tenant", "name": "strict", "tenant": "tenant-a", "checks": PII_BLOCK}
    response = as_(w.alice).post(url("guardrail-policies"), body, format="json")
    assert response.status_code == 400
    assert "another owner" in response.data["name"][0]
    assert GuardrailPolicy.objects.get(name="strict").tenant == w.b


def test_a_policy_set_by_hand_is_no_longer_the_configs(w):
    policy = GuardrailPolicy.objects.create(
        scope="tenant", name="cfg", tenant=w.a, checks="default", from_config=True
    )
    response = as_(w.alice).patch(
        url("guardrail-policy", id=policy.pk), {"checks": PII_BLOCK}, format="json"
    )
    assert response.status_code == 200, response.data
    assert response.data["from_config"] is False and response.data["checks"] == PII_BLOCK


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"checks": [{"check": "pii", "stage": "input", "action": "explode"}]}, "checks",
         "checks[0].action for pii must be one of"),
        ({"checks": [{"check": "virus", "action": "block"}]}, "checks", "checks[0].check"),
        ({"checks": []}, "checks", "non-empty list"),
        ({"checks": "strict"}, "checks", "'default'"),
        ({"checks": [{"check": "pii", "action": "block", "colour": 1}]}, "checks", "colour"),
        ({"checks": None}, "checks", "null"),
        ({"name": "not a slug!"}, "name", "letters, digits"),
        ({"name": "x" * 101}, "name", "100"),
        ({"scope": "galaxy"}, "scope", "galaxy"),
        ({"tenant": None}, "tenant", "needs its tenant"),
        ({"api_key": "abc"}, "api_key", "integer"),
        ({"enabled": "maybe"}, "enabled", "boolean"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_problem(w, body, field, words):
    request = {"scope": "tenant", "name": "a-guard", "tenant": "tenant-a", "checks": PII_BLOCK}
    response = as_(w.alice).post(url("guardrail-policies"), {**request, **body}, format="json")
    assert response.status_code == 400, response.data
    assert words in " ".join(str(m) for m in response.data[field]), response.data
    assert not GuardrailPolicy.objects.exists()
    assert guardrail_events() == []


def test_owners_of_the_wrong_scope_are_a_400(w):
    alice = as_(w.alice)
    body = {"scope": "key", "name": "k", "tenant": "tenant-a", "checks": PII_BLOCK}
    response = alice.post(url("guardrail-policies"), body, format="json")
    assert response.status_code == 400
    assert "needs its api_key" in response.data["api_key"][0]
    assert "only for tenant-scoped" in response.data["tenant"][0]
    operator = {"scope": "operator", "name": "o", "tenant": "tenant-a", "checks": PII_BLOCK}
    response = as_(w.operator).post(url("guardrail-policies"), operator, format="json")
    assert response.status_code == 400 and "tenant" in response.data


def test_bad_changes_are_a_400_naming_the_field(w):
    policy = services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="a-guard", tenant=w.a, checks="default"
    )
    alice = as_(w.alice)
    path = url("guardrail-policy", id=policy.pk)
    bad = alice.patch(path, {"checks": [{"check": "injection", "action": "redact"}]}, format="json")
    assert bad.status_code == 400 and "injection" in bad.data["checks"][0]
    fixed = alice.patch(path, {"name": "other", "tenant": "tenant-b"}, format="json")
    assert fixed.status_code == 400 and set(fixed.data) == {"name", "tenant"}
    not_json = alice.patch(path, "{oops", content_type="application/json")
    assert not_json.status_code == 400
    policy.refresh_from_db()
    assert (policy.name, policy.checks, policy.enabled) == ("a-guard", "default", True)


def test_the_schema_documents_the_routes():
    schema = APIClient().get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/guardrail-policies/" in paths
    assert paths["/api/v1/guardrail-policies/"]["post"]["operationId"] == "guardrail_policies_set"
    assert "GuardrailScopeEnum" in schema.json()["components"]["schemas"]


# --- through the gateway --------------------------------------------------------------

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: chat
        price: {{input_per_mtok: 1000, output_per_mtok: 2000}}
        deployments: [{{provider: oai, model: gpt-up}}]
"""


def test_a_tenant_policy_set_through_the_api_blocks_at_the_gateway(gateway, openai_fake):
    from gateway import catalog

    apply_yaml(CONFIG.format(url=openai_fake.base_url, key=openai_fake.api_key))
    catalog.invalidate()
    alice = make_user("alice")
    secret = new_key(tenant="acme")
    acme = services.tenant_get_or_create(slug="acme")
    Membership.objects.create(user=alice, tenant=acme, role=Role.OWNER)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)

    body = {"scope": "tenant", "name": "acme-pii", "tenant": "acme", "checks": PII_BLOCK}
    created = as_(alice).post(url("guardrail-policies"), body, format="json")
    assert created.status_code == 201, created.data
    catalog.invalidate()  # rather than waiting for the next refresh

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Mail me at jane.doe@example.com please"}],
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "guardrail_blocked", caught.value.body
    assert openai_fake.requests == []

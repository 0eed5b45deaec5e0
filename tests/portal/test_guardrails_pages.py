"""Guardrail policies in the portal: a tenant's page for its owners and admins, the
operator's page for staff; validation errors on the form, permissions and audit."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from gateway.models import GuardrailPolicy, LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Product, Role
from portal.services import SYSTEM, Actor

pytestmark = pytest.mark.django_db

PII_BLOCK = [{"check": "pii", "stage": "input", "action": "block"}]


def _user(name: str, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw", **extra)


@pytest.fixture
def world():
    alice, adam, bob, mallory = _user("alice"), _user("adam"), _user("bob"), _user("mallory")
    operator = _user("operator", is_staff=True)
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    Membership.objects.create(user=adam, tenant=a, role=Role.ADMIN)
    Membership.objects.create(user=bob, tenant=a, role=Role.DEVELOPER)
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    LanguageModel.objects.get_or_create(name="demo-chat")
    product = services.product_create(
        actor=Actor(alice),
        owner=a,
        name="A Chat",
        slug="a-chat",
        models=["demo-chat"],
        visibility=Product.Visibility.PRIVATE,
        status=Product.Status.PUBLISHED,
    )
    key = services.api_key_create(actor=SYSTEM, tenant=a, name="a-key").api_key
    b_key = services.api_key_create(actor=SYSTEM, tenant=b, name="b-key").api_key
    return {
        "alice": alice,
        "adam": adam,
        "bob": bob,
        "mallory": mallory,
        "operator": operator,
        "a": a,
        "b": b,
        "product": product,
        "key": key,
        "b_key": b_key,
    }


def _as(client, user):
    client.force_login(user)
    return client


def events():
    return list(
        AuditEvent.objects.filter(action__startswith="guardrail")
        .order_by("id")
        .values_list("action", "actor__username", "tenant__slug")
    )


TENANT_PAGE = reverse("portal:tenant_guardrails", args=["tenant-a"])
TENANT_SAVE = reverse("portal:tenant_guardrail_save", args=["tenant-a"])


# --- a tenant's page -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "adam"])
def test_owners_and_admins_set_change_toggle_and_remove_a_policy(client, world, who):
    _as(client, world[who])
    page = client.get(TENANT_PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="guardrail-form"' in html and "No guardrail policies yet" in html
    assert 'href="/portal/t/tenant-a/guardrails/"' in html  # the nav link

    response = client.post(
        TENANT_SAVE,
        {"target": "tenant", "name": "a-pii", "checks": json.dumps(PII_BLOCK), "enabled": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = GuardrailPolicy.objects.get(name="a-pii")
    assert (policy.scope, policy.tenant, policy.checks) == ("tenant", world["a"], PII_BLOCK)
    assert policy.enabled and not policy.from_config

    # YAML, for a key
    yaml_checks = "- check: injection\n  stage: input\n  action: flag\n"
    response = client.post(
        TENANT_SAVE,
        {"target": f"key:{world['key'].pk}", "name": "a-key", "checks": yaml_checks},
    )
    assert response.status_code == 302
    key_policy = GuardrailPolicy.objects.get(name="a-key")
    assert key_policy.scope == "key" and key_policy.api_key == world["key"]
    assert key_policy.checks == [{"check": "injection", "stage": "input", "action": "flag"}]
    assert key_policy.enabled is False  # the box was left unticked

    # the default preset, for the tenant's product
    response = client.post(
        TENANT_SAVE,
        {"target": f"product:{world['product'].pk}", "name": "a-prod", "use_default": "on",
         "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    assert GuardrailPolicy.objects.get(name="a-prod").checks == "default"

    html = client.get(TENANT_PAGE).content.decode()
    assert all(f'id="guardrail-policy-{p.pk}"' in html for p in GuardrailPolicy.objects.all())
    assert "pii block on input" in html and "the default preset" in html

    # change: the form is filled with the policy
    html = client.get(TENANT_PAGE, {"policy": policy.pk}).content.decode()
    assert 'value="a-pii"' in html and "&quot;block&quot;" in html

    toggle = client.post(reverse("portal:guardrail_toggle", args=[policy.pk]))
    assert toggle.status_code == 302 and toggle.url == TENANT_PAGE
    policy.refresh_from_db()
    assert policy.enabled is False

    remove = client.post(reverse("portal:guardrail_remove", args=[policy.pk]))
    assert remove.status_code == 302
    assert not GuardrailPolicy.objects.filter(pk=policy.pk).exists()
    assert events() == [
        ("guardrail_policy.created", who, "tenant-a"),
        ("guardrail_policy.created", who, "tenant-a"),
        ("guardrail_policy.created", who, "tenant-a"),
        ("guardrail_policy.changed", who, "tenant-a"),
        ("guardrail_policy.deleted", who, "tenant-a"),
    ]


@pytest.mark.parametrize(
    "form, words",
    [
        ({"checks": '[{"check": "pii", "stage": "input", "action": "explode"}]'},
         "checks[0].action for pii must be one of"),
        ({"checks": "[{oops"}, "neither valid JSON nor YAML"),
        ({"checks": ""}, "Give the checks, or use the default preset."),
        ({"checks": "- check: virus\n  action: block\n"}, "checks[0].check must be one of"),
        ({"checks": "strict"}, "&#x27;default&#x27; or a non-empty list"),
        ({"checks": "- check: pii\n  action: block\n  1: x\n"}, "unknown field(s) 1"),
        ({"checks": "- check: pii\n  action: block\n  types: [2020-01-01]\n"},
         "may hold only strings"),
        ({"name": "not a slug!"}, "Enter a valid “slug”"),
        ({"target": "key:999999"}, "Select a valid choice"),
    ],
)  # fmt: skip
def test_validation_errors_show_on_the_form(client, world, form, words):
    _as(client, world["alice"])
    data = {"target": "tenant", "name": "a-pii", "checks": json.dumps(PII_BLOCK), **form}
    response = client.post(TENANT_SAVE, data)
    assert response.status_code == 400
    html = response.content.decode()
    assert words in html, html[html.find('id="guardrail-form"') :][:3000]
    assert 'class="error"' in html or 'class="alert error"' in html
    assert not GuardrailPolicy.objects.exists() and events() == []


def test_another_tenants_key_is_not_a_choice(client, world):
    _as(client, world["alice"])
    data = {"target": f"key:{world['b_key'].pk}", "name": "x", "use_default": "on"}
    assert client.post(TENANT_SAVE, data).status_code == 400
    assert not GuardrailPolicy.objects.exists()


def test_a_developer_gets_403_and_a_stranger_404(client, world):
    policy = services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="a-guard", tenant=world["a"], checks="default"
    )
    _as(client, world["bob"])
    assert client.get(TENANT_PAGE).status_code == 403
    data = {"target": "tenant", "name": "bobs", "use_default": "on"}
    assert client.post(TENANT_SAVE, data).status_code == 403
    assert client.post(reverse("portal:guardrail_toggle", args=[policy.pk])).status_code == 403
    assert client.post(reverse("portal:guardrail_remove", args=[policy.pk])).status_code == 403

    _as(client, world["mallory"])
    assert client.get(TENANT_PAGE).status_code == 404
    assert client.post(TENANT_SAVE, data).status_code == 404
    assert client.post(reverse("portal:guardrail_toggle", args=[policy.pk])).status_code == 404
    assert client.post(reverse("portal:guardrail_remove", args=[policy.pk])).status_code == 404
    policy.refresh_from_db()
    assert policy.enabled and GuardrailPolicy.objects.count() == 1
    assert [e[0] for e in events()] == ["guardrail_policy.created"]


# --- the operator's page ---------------------------------------------------------------


def test_staff_set_and_remove_operator_policies(client, world):
    services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="a-guard", tenant=world["a"], checks=PII_BLOCK
    )
    _as(client, world["operator"])
    page = client.get(reverse("portal:guardrails"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/portal/guardrails/"' in html and "a-guard" in html
    assert 'name="target"' not in html

    response = client.post(
        reverse("portal:guardrail_save"), {"name": "floor", "use_default": "on", "enabled": "on"}
    )
    assert response.status_code == 302
    floor = GuardrailPolicy.objects.get(name="floor")
    assert (floor.scope, floor.checks, floor.tenant) == ("operator", "default", None)

    bad = client.post(reverse("portal:guardrail_save"), {"name": "floor2", "checks": "[]"})
    assert bad.status_code == 400 and "non-empty list" in bad.content.decode()

    # members see the floor on their page, without actions
    _as(client, world["alice"])
    html = client.get(TENANT_PAGE).content.decode()
    assert "floor" in html and reverse("portal:guardrail_remove", args=[floor.pk]) not in html
    assert client.post(reverse("portal:guardrail_remove", args=[floor.pk])).status_code == 403

    _as(client, world["operator"])
    removed = client.post(reverse("portal:guardrail_remove", args=[floor.pk]))
    assert removed.status_code == 302 and removed.url == reverse("portal:guardrails")
    assert events() == [
        ("guardrail_policy.created", None, "tenant-a"),
        ("guardrail_policy.created", "operator", None),
        ("guardrail_policy.deleted", "operator", None),
    ]


def test_non_staff_may_not_use_the_operator_page(client, world):
    _as(client, world["alice"])
    assert client.get(reverse("portal:guardrails")).status_code == 403
    data = {"name": "floor", "use_default": "on", "enabled": "on"}
    assert client.post(reverse("portal:guardrail_save"), data).status_code == 403
    assert not GuardrailPolicy.objects.exists()
    assert 'href="/portal/guardrails/"' not in client.get(TENANT_PAGE).content.decode()

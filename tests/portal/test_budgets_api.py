"""Budgets, rate limits and usage through the management API (/api/v1/): the flows, the
roles, tenant isolation, validation and the schema.

alice owns A (adam admin, bob developer, victor viewer); mallory owns B.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from billing import controls
from billing.models import Budget, RateLimit
from billing.services import usage_store_batch
from gateway.models import LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Role
from portal.services import Actor

# usage_store_batch closes stale connections, which a test wrapped in a transaction can't
# survive: these tests commit for real (and the tables are flushed after each).
pytestmark = pytest.mark.django_db(transaction=True)


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def as_(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def w():
    make = get_user_model().objects.create_user
    alice, adam, bob, victor, mallory = (
        make(n, f"{n}@example.com") for n in ("alice", "adam", "bob", "victor", "mallory")
    )
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    for person, role in ((adam, Role.ADMIN), (bob, Role.DEVELOPER), (victor, Role.VIEWER)):
        Membership.objects.create(user=person, tenant=a, role=role)
    app = services.application_create(actor=Actor(alice), tenant=a, name="a-app")
    key = services.api_key_create(actor=Actor(alice), tenant=a, application=app, name="a-key")
    b_app = services.application_create(actor=Actor(mallory), tenant=b, name="b-app")
    b_key = services.api_key_create(actor=Actor(mallory), tenant=b, application=b_app, name="bk")
    LanguageModel.objects.create(name="demo-chat")
    return SimpleNamespace(
        alice=alice,
        adam=adam,
        bob=bob,
        victor=victor,
        mallory=mallory,
        a=a,
        b=b,
        app=app,
        key=key.api_key,
        b_app=b_app,
        b_key=b_key.api_key,
    )


def use(tenant, key, cost, *, when=None, status=200):
    usage_store_batch(
        rows=[
            {
                "request_id": uuid.uuid4().hex,
                "created_at": when or timezone.now(),
                "tenant_id": tenant.pk,
                "api_key_id": key.pk if key is not None else None,
                "route": "chat.completions",
                "public_model": "demo-chat",
                "served_model": "demo-chat",
                "input_tokens": 40,
                "output_tokens": 10,
                "cost": cost,
                "latency_ms": 9.0,
                "status": status,
            }
        ]
    )


# --- budgets ----------------------------------------------------------------------------


def test_an_admin_sets_a_budget_reads_it_fill_changes_and_deletes_it(w):
    c = as_(w.adam)
    response = c.post(
        url("budgets", slug=w.a.slug), {"amount_usd": "4.00", "period": "monthly"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tenant"] == "tenant-a" and body["scope"] == "tenant"
    assert (body["application"], body["api_key"]) == (None, None)
    assert body["amount_usd"] == "4.0000" and Decimal(body["spent_usd"]) == 0
    assert body["thresholds"] == [50, 80, 100] and body["hard"] is True
    start = controls.period_start("monthly")
    assert body["period_start"].replace("Z", "+00:00") == start.isoformat()
    budget_id = body["id"]

    use(w.a, w.key, "1.0000")
    use(w.a, None, "0.5000")
    use(w.b, w.b_key, "100")  # another tenant's spending
    use(w.a, w.key, "50", when=start - timedelta(seconds=1))  # last period's
    listed = c.get(url("budgets", slug=w.a.slug)).json()
    assert listed["count"] == 1
    assert Decimal(listed["results"][0]["spent_usd"]) == Decimal("1.5")
    assert listed["results"][0]["percent"] == "37.5"

    # Setting the same target and period again changes it; what is left out is kept.
    response = c.post(
        url("budgets", slug=w.a.slug),
        {"amount_usd": "2", "hard": False, "notify_emails": ["cfo@example.com"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == budget_id and body["amount_usd"] == "2.0000" and body["hard"] is False
    assert body["thresholds"] == [50, 80, 100] and body["notify_emails"] == ["cfo@example.com"]
    assert body["percent"] == "75.0"
    response = c.post(url("budgets", slug=w.a.slug), {"amount_usd": "3"}, format="json")
    assert response.json()["notify_emails"] == ["cfo@example.com"]
    assert Budget.objects.count() == 1

    detail = url("budget", slug=w.a.slug, id=budget_id)
    assert as_(w.victor).get(detail).json()["amount_usd"] == "3.0000"
    assert c.delete(detail).status_code == 204
    assert c.get(detail).status_code == 404
    actions = list(
        AuditEvent.objects.filter(actor=w.adam, action__startswith="budget.")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["budget.created", "budget.changed", "budget.changed", "budget.deleted"]


def test_budgets_on_an_application_and_on_a_key(w):
    c = as_(w.alice)
    app_budget = c.post(
        url("budgets", slug=w.a.slug),
        {"application": w.app.pk, "period": "daily", "amount_usd": "1"},
        format="json",
    ).json()
    key_budget = c.post(
        url("budgets", slug=w.a.slug),
        {"api_key": w.key.pk, "period": "total", "amount_usd": "10", "thresholds": [90]},
        format="json",
    ).json()
    assert (app_budget["scope"], app_budget["application"]) == ("application", w.app.pk)
    assert (key_budget["scope"], key_budget["api_key"], key_budget["period_start"]) == (
        "key",
        w.key.pk,
        None,
    )
    use(w.a, w.key, "0.2500")
    use(w.a, None, "5")  # not through the application's key
    results = {b["id"]: b for b in c.get(url("budgets", slug=w.a.slug)).json()["results"]}
    assert Decimal(results[app_budget["id"]]["spent_usd"]) == Decimal("0.25")
    assert Decimal(results[key_budget["id"]]["spent_usd"]) == Decimal("0.25")


def test_budget_input_is_validated_with_the_services_message(w):
    c = as_(w.adam)
    endpoint = url("budgets", slug=w.a.slug)
    cases = [
        ({"amount_usd": "-5"}, {"detail": "The budget must be a positive amount of dollars."}),
        ({"amount_usd": "0"}, {"detail": "The budget must be a positive amount of dollars."}),
        (
            {"amount_usd": "5", "thresholds": [0, 50]},
            {"detail": "Thresholds are percentages from 1 to 100."},
        ),
        (
            {"amount_usd": "5", "application": w.app.pk, "api_key": w.key.pk},
            {"detail": "Set a budget or limit on an application or on a key, not both."},
        ),
    ]
    for data, expected in cases:
        response = c.post(endpoint, data, format="json")
        assert response.status_code == 400, data
        assert response.json() == expected, data
    for data, field in (
        ({}, "amount_usd"),
        ({"amount_usd": "abc"}, "amount_usd"),
        ({"amount_usd": "5", "period": "weekly"}, "period"),
        ({"amount_usd": "5", "notify_emails": ["not-an-email"]}, "notify_emails"),
    ):
        response = c.post(endpoint, data, format="json")
        assert response.status_code == 400 and field in response.json(), data
    assert not Budget.objects.exists()


def test_only_owners_and_admins_change_budgets(w):
    budget = controls.budget_set(actor=Actor(w.alice), tenant=w.a, amount_usd=Decimal("5"))
    detail = url("budget", slug=w.a.slug, id=budget.pk)
    for person in (w.bob, w.victor):
        c = as_(person)
        assert c.get(url("budgets", slug=w.a.slug)).status_code == 200
        assert c.get(detail).status_code == 200
        # 403 whether or not the body is valid: the role is checked first.
        for data in ({"amount_usd": "500"}, {"amount_usd": "-1"}):
            response = c.post(url("budgets", slug=w.a.slug), data, format="json")
            assert response.status_code == 403 and "budget.manage" in response.json()["detail"]
        assert c.delete(detail).status_code == 403
    budget.refresh_from_db()
    assert budget.amount_usd == Decimal("5")
    assert (
        as_(w.alice)
        .post(url("budgets", slug=w.a.slug), {"amount_usd": "6"}, format="json")
        .status_code
        == 200
    )


def test_another_tenants_budgets_limits_and_objects_answer_404(w):
    budget = controls.budget_set(actor=Actor(w.alice), tenant=w.a, amount_usd=Decimal("5"))
    limit = controls.rate_limit_set(actor=Actor(w.alice), tenant=w.a, concurrent=3)
    c = as_(w.mallory)
    for slug in (w.a.slug, w.b.slug):  # not a member of A; B has no such objects
        for name, obj in (("budget", budget), ("rate-limit", limit)):
            detail = url(name, slug=slug, id=obj.pk)
            assert c.get(detail).status_code == 404, (slug, name)
            assert c.delete(detail).status_code == 404, (slug, name)
    assert c.get(url("budgets", slug=w.a.slug)).status_code == 404
    assert c.get(url("rate-limits", slug=w.a.slug)).status_code == 404
    assert c.get(url("usage", slug=w.a.slug)).status_code == 404
    assert c.post(url("budgets", slug=w.a.slug), {"amount_usd": "1"}).status_code == 404
    # A's application and key named in a body sent to B's routes.
    for name, data in (
        ("budgets", {"amount_usd": "1", "application": w.app.pk}),
        ("budgets", {"amount_usd": "1", "api_key": w.key.pk}),
        ("rate-limits", {"concurrent": 1, "application": w.app.pk}),
        ("rate-limits", {"concurrent": 1, "api_key": w.key.pk}),
    ):
        response = c.post(url(name, slug=w.b.slug), data, format="json")
        assert response.status_code == 404, (name, data)
    assert Budget.objects.filter(tenant=w.b).count() == 0
    assert RateLimit.objects.filter(tenant=w.b).count() == 0
    assert Budget.objects.filter(pk=budget.pk).exists()
    assert RateLimit.objects.filter(pk=limit.pk).exists()
    # B's own list shows nothing of A.
    assert c.get(url("budgets", slug=w.b.slug)).json()["count"] == 0


# --- rate limits ------------------------------------------------------------------------


def test_rate_limits_crud(w):
    c = as_(w.adam)
    endpoint = url("rate-limits", slug=w.a.slug)
    response = c.post(
        endpoint,
        {"api_key": w.key.pk, "model": "demo-chat", "requests_per_minute": 60},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["scope"], body["api_key"], body["model"]) == ("key", w.key.pk, "demo-chat")
    assert (body["requests_per_minute"], body["tokens_per_minute"], body["concurrent"]) == (
        60,
        None,
        None,
    )
    # The same target and model: changed in place; limits left out are kept, null lifts one.
    response = c.post(
        endpoint,
        {"api_key": w.key.pk, "model": "demo-chat", "tokens_per_minute": 10_000},
        format="json",
    )
    assert response.status_code == 200 and response.json()["id"] == body["id"]
    assert response.json()["requests_per_minute"] == 60
    response = c.post(
        endpoint,
        {"api_key": w.key.pk, "model": "demo-chat", "requests_per_minute": None},
        format="json",
    )
    assert response.json()["requests_per_minute"] is None
    assert response.json()["tokens_per_minute"] == 10_000
    # Another model, or every model, is another limit.
    assert c.post(endpoint, {"concurrent": 4}, format="json").status_code == 201
    listed = as_(w.victor).get(endpoint).json()
    assert listed["count"] == 2

    detail = url("rate-limit", slug=w.a.slug, id=body["id"])
    assert as_(w.victor).get(detail).json()["tokens_per_minute"] == 10_000
    assert as_(w.victor).delete(detail).status_code == 403
    assert as_(w.bob).post(endpoint, {"concurrent": 9}, format="json").status_code == 403
    assert c.delete(detail).status_code == 204
    assert c.get(detail).status_code == 404
    actions = set(AuditEvent.objects.filter(actor=w.adam).values_list("action", flat=True))
    assert {"rate_limit.created", "rate_limit.changed", "rate_limit.deleted"} <= actions


def test_rate_limit_input_is_validated(w):
    c = as_(w.adam)
    endpoint = url("rate-limits", slug=w.a.slug)
    response = c.post(endpoint, {"model": "demo-chat"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Set at least one of requests_per_minute")
    for data, field in (
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"concurrent": -2}, "concurrent"),
        ({"tokens_per_minute": "lots"}, "tokens_per_minute"),
        ({"concurrent": 1, "model": "no-such-model"}, "model"),
    ):
        response = c.post(endpoint, data, format="json")
        assert response.status_code == 400 and field in response.json(), data
    assert not RateLimit.objects.exists()


# --- usage ------------------------------------------------------------------------------


def test_usage_per_day_and_totals(w):
    now = timezone.now()
    use(w.a, w.key, "0.1000", when=now)
    use(w.a, w.key, "0.2000", when=now, status=429)
    use(w.a, None, "0.0500", when=now - timedelta(days=3))
    use(w.a, w.key, "1", when=now - timedelta(days=20))
    use(w.b, w.b_key, "9", when=now)

    body = as_(w.victor).get(url("usage", slug=w.a.slug), {"days": 7}).json()
    assert body["tenant"] == "tenant-a" and body["days"] == 7
    assert len(body["per_day"]) == 7
    assert body["last_day"] == now.date().isoformat() == body["per_day"][-1]["day"]
    assert Decimal(body["totals"]["cost"]) == Decimal("0.35")
    assert body["totals"]["requests"] == 3 and body["totals"]["errors"] == 1
    assert body["totals"]["input_tokens"] == 120 and body["totals"]["output_tokens"] == 30
    assert Decimal(body["per_day"][-1]["cost"]) == Decimal("0.3")
    assert Decimal(body["per_day"][-4]["cost"]) == Decimal("0.05")
    assert body["by_model"][0]["model"] == "demo-chat"
    assert [k["key_name"] for k in body["by_key"]] == ["a-key", ""]
    assert body["by_application"][0]["application_name"] == "a-app"

    month = as_(w.victor).get(url("usage", slug=w.a.slug)).json()  # 30 days by default
    assert month["days"] == 30 and len(month["per_day"]) == 30
    assert Decimal(month["totals"]["cost"]) == Decimal("1.35")

    response = as_(w.victor).get(url("usage", slug=w.a.slug), {"days": 5})
    assert response.status_code == 400 and "days" in response.json()


def test_a_personal_access_token_reads_budgets_and_usage(w):
    issued = services.personal_token_create(actor=Actor(w.victor), name="script")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert client.get(url("budgets", slug=w.a.slug)).status_code == 200
    assert client.get(url("rate-limits", slug=w.a.slug)).status_code == 200
    assert client.get(url("usage", slug=w.a.slug)).status_code == 200
    assert APIClient().get(url("usage", slug=w.a.slug)).status_code == 401


def test_the_schema_documents_budgets_limits_and_usage(w):
    spec = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    paths = spec["paths"]
    expected = {
        "/api/v1/tenants/{slug}/budgets/": {"get": "budgets_list", "post": "budgets_set"},
        "/api/v1/tenants/{slug}/budgets/{id}/": {
            "get": "budgets_retrieve",
            "delete": "budgets_delete",
        },
        "/api/v1/tenants/{slug}/rate-limits/": {
            "get": "rate_limits_list",
            "post": "rate_limits_set",
        },
        "/api/v1/tenants/{slug}/rate-limits/{id}/": {
            "get": "rate_limits_retrieve",
            "delete": "rate_limits_delete",
        },
        "/api/v1/tenants/{slug}/usage/": {"get": "usage_retrieve"},
    }
    for path, ops in expected.items():
        for method, operation_id in ops.items():
            op = paths[path][method]
            assert op["operationId"] == operation_id
            assert {"200", "401", "404"} <= set(op["responses"]) or method == "delete"
    budget = spec["components"]["schemas"]["BudgetOutput"]["properties"]
    assert {"spent_usd", "percent", "period_start", "amount_usd"} <= set(budget)
    days = [p for p in paths["/api/v1/tenants/{slug}/usage/"]["get"]["parameters"]]
    assert any(p["name"] == "days" and p["schema"]["enum"] == [7, 30, 90] for p in days)

"""The management REST API (/api/v1/): matrix, tenant isolation, flows, secrets, schema."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLResolver, get_resolver, reverse
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from billing import controls
from gateway.models import LanguageModel
from portal import services
from portal.access import MATRIX
from portal.api import urls as api_urls
from portal.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    PersonalAccessToken,
    Product,
    Role,
    Subscription,
)
from portal.services import SYSTEM, Actor, hash_secret

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def make_user(name, **extra):
    # No password: the tests authenticate with force_authenticate or tokens (and skip PBKDF2).
    return get_user_model().objects.create_user(name, f"{name}@example.com", **extra)


def as_(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def w():
    """alice owns A (adam admin, bob developer, victor viewer, tina a developer to re-role);
    mallory owns B; the operator is staff. A has an app, a key, a private product with a
    pending subscription and alice has a personal access token."""
    alice, adam, bob, victor, tina = (
        make_user(n) for n in ("alice", "adam", "bob", "victor", "tina")
    )
    mallory, operator = make_user("mallory"), make_user("operator", is_staff=True)
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    members = {
        person: Membership.objects.create(user=person, tenant=a, role=role)
        for person, role in (
            (adam, Role.ADMIN),
            (bob, Role.DEVELOPER),
            (victor, Role.VIEWER),
            (tina, Role.DEVELOPER),
        )
    }
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    app = services.application_create(actor=Actor(alice), tenant=a, name="a-app")
    key = services.api_key_create(actor=Actor(alice), tenant=a, application=app, name="a-key")
    b_app = services.application_create(actor=Actor(mallory), tenant=b, name="b-app")
    LanguageModel.objects.create(name="demo-chat")
    open_product = services.product_create(
        actor=Actor(operator),
        owner=None,
        name="Open chat",
        slug="open-chat",
        models=["demo-chat"],
        status=Product.Status.PUBLISHED,
    )
    private_product = services.product_create(
        actor=Actor(alice),
        owner=a,
        name="A private",
        slug="a-private",
        visibility=Product.Visibility.PRIVATE,
        status=Product.Status.PUBLISHED,
        approval_required=True,
    )
    sub = services.subscription_request(
        actor=Actor(alice), application=app, product=private_product
    )
    token = services.personal_token_create(actor=Actor(alice), name="alice-script").token
    return SimpleNamespace(
        alice=alice,
        adam=adam,
        bob=bob,
        victor=victor,
        tina=tina,
        mallory=mallory,
        operator=operator,
        a=a,
        b=b,
        members=members,
        app=app,
        key=key.api_key,
        b_app=b_app,
        open_product=open_product,
        private_product=private_product,
        sub=sub,
        token=token,
    )


# --- 1. the permission matrix, through the API ----------------------------------------

ROLE_USER = {Role.OWNER: "alice", Role.ADMIN: "adam", Role.DEVELOPER: "bob", Role.VIEWER: "victor"}

# write action -> (the MATRIX action that governs it, whether it is audited, the request)
ACTIONS = {
    "create app": (
        "application.manage",
        True,
        lambda c, w: c.post(url("applications", slug=w.a.slug), {"name": "new-app"}),
    ),
    "create key": (
        "key.manage",
        True,
        lambda c, w: c.post(url("keys", id=w.app.id), {"name": "new-key"}),
    ),
    "revoke key": (
        "key.manage",
        True,
        lambda c, w: c.post(url("key-revoke", id=w.key.id)),
    ),
    "request subscription": (
        "subscription.request",
        True,
        lambda c, w: c.post(
            url("application-subscriptions", id=w.app.id), {"product": w.open_product.slug}
        ),
    ),
    "invite member": (
        "tenant.manage_members",
        True,
        lambda c, w: c.post(
            url("invitations", slug=w.a.slug), {"email": "new@example.com", "role": "developer"}
        ),
    ),
    "change role": (
        "tenant.manage_members",
        True,
        lambda c, w: c.patch(
            url("member", slug=w.a.slug, id=w.members[w.tina].id), {"role": "viewer"}
        ),
    ),
    "view audit": (
        "audit.view",
        False,
        lambda c, w: c.get(url("audit"), {"tenant": w.a.slug}),
    ),
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix_through_the_api(w, role, action):
    matrix_action, audited, perform = ACTIONS[action]
    allowed = role in MATRIX[matrix_action]
    events_before = AuditEvent.objects.count()

    response = perform(as_(getattr(w, ROLE_USER[role])), w)

    if allowed:
        assert 200 <= response.status_code < 300, (role, action, response.data)
        assert AuditEvent.objects.count() > events_before or not audited
    else:
        assert response.status_code == 403, (role, action, response.status_code)
        assert AuditEvent.objects.count() == events_before  # nothing happened
    # the state says the same as the status code
    w.key.refresh_from_db()
    w.members[w.tina].refresh_from_db()
    effects = {
        "create app": w.a.applications.filter(name="new-app").exists(),
        "create key": ApiKey.objects.filter(name="new-key").exists(),
        "revoke key": w.key.revoked_at is not None,
        "request subscription": w.app.subscriptions.filter(product=w.open_product).exists(),
        "invite member": Invitation.objects.filter(email="new@example.com").exists(),
        "change role": w.members[w.tina].role == Role.VIEWER,
        "view audit": allowed,
    }
    assert effects[action] is allowed


def test_the_operator_may_do_every_action(w):
    for action, (_, _, perform) in ACTIONS.items():
        response = perform(as_(w.operator), w)
        assert 200 <= response.status_code < 300, (action, response.data)


def test_a_viewer_reads_everything_of_its_tenant(w):
    client = as_(w.victor)
    for path in (
        url("tenants"),
        url("tenant", slug=w.a.slug),
        url("members", slug=w.a.slug),
        url("member", slug=w.a.slug, id=w.members[w.bob].id),
        url("invitations", slug=w.a.slug),
        url("applications", slug=w.a.slug),
        url("application", id=w.app.id),
        url("keys", id=w.app.id),
        url("application-subscriptions", id=w.app.id),
        url("subscriptions"),
        url("products"),
        url("product", slug=w.private_product.slug),
    ):
        assert client.get(path).status_code == 200, path
    assert (
        client.patch(url("product", slug=w.private_product.slug), {"name": "x"}).status_code == 403
    )
    assert client.delete(url("member", slug=w.a.slug, id=w.members[w.bob].id)).status_code == 403


def test_owner_rules_hold_through_the_api(w):
    """An admin can't touch owners; the last owner stays."""
    owner_membership = Membership.objects.get(user=w.alice, tenant=w.a)
    path = url("member", slug=w.a.slug, id=owner_membership.id)
    assert as_(w.adam).patch(path, {"role": "viewer"}).status_code == 403
    assert as_(w.adam).delete(path).status_code == 403
    response = as_(w.alice).patch(path, {"role": "viewer"})
    assert response.status_code == 400 and "owner" in str(response.data)
    invite_owner = {"email": "boss@example.com", "role": "owner"}
    assert as_(w.adam).post(url("invitations", slug=w.a.slug), invite_owner).status_code == 403
    assert as_(w.alice).post(url("invitations", slug=w.a.slug), invite_owner).status_code == 201
    removed = as_(w.alice).delete(url("member", slug=w.a.slug, id=w.members[w.tina].id))
    assert removed.status_code == 204
    assert not Membership.objects.filter(user=w.tina, tenant=w.a).exists()


# --- 2. isolation: another tenant's ids and slugs are 404 ------------------------------


def registered_routes_with_params() -> set[tuple[str, str]]:
    """(route name, method) for every /api/v1/ route that takes an id or slug."""
    routes = set()
    for pattern in api_urls.urlpatterns:
        if "<" not in str(pattern.pattern):
            continue
        view = pattern.callback.view_class
        for method in view.http_method_names:
            if method != "options" and hasattr(view, method):
                routes.add((pattern.name, method))
    return routes


def isolation_cases(w) -> dict[tuple[str, str], tuple[str, dict | None]]:
    """Every id/slug route, called with tenant A's objects."""
    a, app, key, sub = w.a.slug, w.app.id, w.key.id, w.sub.id
    member = w.members[w.bob].id
    product = w.private_product.slug
    budget = controls.budget_set(actor=SYSTEM, tenant=w.a, amount_usd=Decimal(5)).pk
    limit = controls.rate_limit_set(actor=SYSTEM, tenant=w.a, requests_per_minute=5).pk
    policy = services.cache_policy_set(actor=SYSTEM, product=w.private_product, mode="exact").pk
    guardrail = services.guardrail_policy_set(
        actor=SYSTEM, scope="tenant", name="a-guard", tenant=w.a, checks="default"
    ).pk
    return {
        ("tenant", "get"): (url("tenant", slug=a), None),
        ("members", "get"): (url("members", slug=a), None),
        ("member", "get"): (url("member", slug=a, id=member), None),
        ("member", "patch"): (url("member", slug=a, id=member), {"role": "viewer"}),
        ("member", "delete"): (url("member", slug=a, id=member), None),
        ("invitations", "get"): (url("invitations", slug=a), None),
        ("invitations", "post"): (
            url("invitations", slug=a),
            {"email": "spy@example.com", "role": "admin"},
        ),
        ("applications", "get"): (url("applications", slug=a), None),
        ("applications", "post"): (url("applications", slug=a), {"name": "trojan"}),
        ("application", "get"): (url("application", id=app), None),
        ("keys", "get"): (url("keys", id=app), None),
        ("keys", "post"): (url("keys", id=app), {"name": "stolen"}),
        ("key-rotate", "post"): (url("key-rotate", id=key), {"grace_seconds": 0}),
        ("key-revoke", "post"): (url("key-revoke", id=key), None),
        ("product", "get"): (url("product", slug=product), None),
        ("product", "patch"): (url("product", slug=product), {"name": "hijacked"}),
        ("application-subscriptions", "get"): (url("application-subscriptions", id=app), None),
        ("application-subscriptions", "post"): (
            url("application-subscriptions", id=app),
            {"product": w.open_product.slug},
        ),
        ("subscription-approve", "post"): (url("subscription-approve", id=sub), {}),
        ("subscription-reject", "post"): (url("subscription-reject", id=sub), {"reason": "no"}),
        ("subscription-suspend", "post"): (url("subscription-suspend", id=sub), {}),
        ("subscription-resume", "post"): (url("subscription-resume", id=sub), {}),
        ("subscription-revoke", "post"): (url("subscription-revoke", id=sub), {}),
        ("token-revoke", "post"): (url("token-revoke", id=w.token.id), None),
        ("cost-report", "get"): (url("cost-report", slug=a, month="2026-01"), None),
        ("budgets", "get"): (url("budgets", slug=a), None),
        ("budgets", "post"): (url("budgets", slug=a), {"amount_usd": "1000"}),
        ("budget", "get"): (url("budget", slug=a, id=budget), None),
        ("budget", "delete"): (url("budget", slug=a, id=budget), None),
        ("rate-limits", "get"): (url("rate-limits", slug=a), None),
        ("rate-limits", "post"): (url("rate-limits", slug=a), {"requests_per_minute": 1}),
        ("rate-limit", "get"): (url("rate-limit", slug=a, id=limit), None),
        ("rate-limit", "delete"): (url("rate-limit", slug=a, id=limit), None),
        ("usage", "get"): (url("usage", slug=a), None),
        ("cache-policy", "get"): (url("cache-policy", id=policy), None),
        ("cache-policy", "patch"): (url("cache-policy", id=policy), {"mode": "off"}),
        ("cache-policy", "delete"): (url("cache-policy", id=policy), None),
        ("cache-purge", "post"): (url("cache-purge", slug=a), None),
        ("guardrail-policy", "get"): (url("guardrail-policy", id=guardrail), None),
        ("guardrail-policy", "patch"): (url("guardrail-policy", id=guardrail), {"enabled": False}),
        ("guardrail-policy", "delete"): (url("guardrail-policy", id=guardrail), None),
    }


def test_another_tenants_ids_and_slugs_answer_404_on_every_route(w):
    mallory = as_(w.mallory)
    cases = isolation_cases(w)
    events_before = AuditEvent.objects.count()
    answered = 0
    for (name, method), (path, body) in cases.items():
        response = getattr(mallory, method)(path, body)
        assert response.status_code == 404, (name, method, response.status_code)
        answered += 1

    registered = registered_routes_with_params()
    assert answered == len(registered), "a route with an id or slug has no isolation case"
    assert set(cases) == registered
    # and nothing of A changed
    assert AuditEvent.objects.count() == events_before
    w.key.refresh_from_db()
    w.sub.refresh_from_db()
    w.private_product.refresh_from_db()
    assert w.key.revoked_at is None and w.key.rotated_to is None
    assert w.sub.status == Subscription.Status.PENDING
    assert w.private_product.name == "A private"
    assert Membership.objects.get(pk=w.members[w.bob].id).role == Role.DEVELOPER
    assert PersonalAccessToken.objects.get(pk=w.token.id).revoked_at is None


def test_another_tenants_slugs_in_queries_and_bodies_answer_404(w):
    mallory = as_(w.mallory)
    # A's membership id under mallory's own tenant
    path = url("member", slug=w.b.slug, id=w.members[w.bob].id)
    assert mallory.get(path).status_code == 404
    assert mallory.patch(path, {"role": "viewer"}).status_code == 404
    assert mallory.get(url("audit"), {"tenant": w.a.slug}).status_code == 404
    body = {"owner": w.a.slug, "name": "Sneaky", "slug": "sneaky"}
    assert mallory.post(url("products"), body).status_code == 404
    private = {"product": w.private_product.slug}
    assert mallory.post(url("application-subscriptions", id=w.b_app.id), private).status_code == 404
    # lists only show her own world
    assert [t["slug"] for t in mallory.get(url("tenants")).data["results"]] == [w.b.slug]
    assert mallory.get(url("subscriptions")).data["count"] == 0
    slugs = {p["slug"] for p in mallory.get(url("products")).data["results"]}
    assert slugs == {w.open_product.slug}
    events = mallory.get(url("audit")).data["results"]
    assert events and {e["tenant"] for e in events} == {w.b.slug}


def test_a_visible_product_of_another_tenant_is_403_to_change(w):
    w.private_product.visibility = Product.Visibility.PUBLIC
    w.private_product.save()
    response = as_(w.mallory).patch(url("product", slug=w.private_product.slug), {"name": "x"})
    assert response.status_code == 403


# --- 3. subscription approval ----------------------------------------------------------


def test_subscription_approval_flow(w):
    mallory, bob, alice = as_(w.mallory), as_(w.bob), as_(w.alice)
    created = mallory.post(
        url("products"),
        {
            "owner": w.b.slug,
            "name": "B Summaries",
            "slug": "b-summaries",
            "status": "published",
            "approval_required": True,
            "models": ["demo-chat"],
        },
    )
    assert created.status_code == 201, created.data
    assert created.data["owner"] == w.b.slug and created.data["models"] == ["demo-chat"]
    assert "b-summaries" in {p["slug"] for p in bob.get(url("products")).data["results"]}

    requested = bob.post(url("application-subscriptions", id=w.app.id), {"product": "b-summaries"})
    assert requested.status_code == 201
    assert requested.data["status"] == "pending" and requested.data["requested_by"] == "bob"
    sub_id = requested.data["id"]

    # the requester's side may not decide; the product's side sees it in its queue
    assert bob.post(url("subscription-approve", id=sub_id)).status_code == 403
    assert alice.post(url("subscription-approve", id=sub_id)).status_code == 403
    pending = mallory.get(url("subscriptions"), {"status": "pending"}).data["results"]
    assert [s["id"] for s in pending] == [sub_id]
    assert mallory.get(url("subscriptions"), {"status": "bogus"}).status_code == 400

    approved = mallory.post(url("subscription-approve", id=sub_id))
    assert approved.status_code == 200, approved.data
    assert approved.data["status"] == "active" and approved.data["decided_by"] == "mallory"
    assert mallory.post(url("subscription-approve", id=sub_id)).status_code == 400
    assert mallory.get(url("subscriptions"), {"status": "pending"}).data["count"] == 0

    # rejecting needs a reason
    app2 = alice.post(url("applications", slug=w.a.slug), {"name": "second"}).data["id"]
    second = bob.post(url("application-subscriptions", id=app2), {"product": "b-summaries"})
    assert second.data["status"] == "pending"
    reject = url("subscription-reject", id=second.data["id"])
    assert mallory.post(reject, {}).status_code == 400
    assert mallory.post(reject, {"reason": "   "}).status_code == 400
    assert Subscription.objects.get(pk=second.data["id"]).status == Subscription.Status.PENDING
    rejected = mallory.post(reject, {"reason": "Not for production traffic."})
    assert rejected.status_code == 200
    assert rejected.data["status"] == "rejected"
    seen = bob.get(url("application-subscriptions", id=app2)).data["results"][0]
    assert (seen["status"], seen["reason"]) == ("rejected", "Not for production traffic.")

    # afterwards: the product side suspends and resumes, the subscriber may only cancel
    assert mallory.post(url("subscription-suspend", id=sub_id)).data["status"] == "suspended"
    assert bob.post(url("subscription-resume", id=sub_id)).status_code == 403
    assert mallory.post(url("subscription-resume", id=sub_id)).data["status"] == "active"
    assert bob.post(url("subscription-revoke", id=sub_id)).data["status"] == "revoked"
    actions = set(AuditEvent.objects.filter(tenant=w.a).values_list("action", flat=True))
    assert {"subscription.requested", "subscription.decided", "subscription.revoked"} <= actions


def test_resume_does_not_skip_approval(w):
    response = as_(w.alice).post(url("subscription-resume", id=w.sub.id))
    assert response.status_code == 400
    w.sub.refresh_from_db()
    assert w.sub.status == Subscription.Status.PENDING


def test_the_subscriber_cannot_lift_a_suspension_by_asking_again(w):
    subscribe = url("application-subscriptions", id=w.app.id)
    sub_id = as_(w.bob).post(subscribe, {"product": w.open_product.slug}).data["id"]
    as_(w.operator).post(url("subscription-suspend", id=sub_id))
    as_(w.bob).post(subscribe, {"product": w.open_product.slug})
    assert Subscription.objects.get(pk=sub_id).status == Subscription.Status.SUSPENDED


def test_a_product_without_approval_is_active_at_once(w):
    response = as_(w.bob).post(
        url("application-subscriptions", id=w.app.id), {"product": w.open_product.slug}
    )
    assert response.status_code == 201 and response.data["status"] == "active"


# --- 4. key secrets are shown once ------------------------------------------------------


def test_a_key_secret_is_shown_once(w):
    alice = as_(w.alice)
    created = alice.post(url("keys", id=w.app.id), {"name": "ci"})
    assert created.status_code == 201
    secret = created.data["secret"]
    assert secret.startswith(services.KEY_PREFIX) and secret.startswith(created.data["prefix"])
    assert "secret_hash" not in created.data
    assert ApiKey.objects.get(pk=created.data["id"]).secret_hash == hash_secret(secret)

    listing = alice.get(url("keys", id=w.app.id))
    assert listing.status_code == 200 and listing.data["count"] == 2
    for item in listing.data["results"]:
        assert "secret" not in item and "secret_hash" not in item
        assert set(item) >= {"prefix", "name", "created_at", "last_used_at", "expires_at"}
    assert secret not in listing.content.decode()

    rotated = alice.post(url("key-rotate", id=created.data["id"]), {"grace_seconds": 60})
    assert rotated.status_code == 201
    assert rotated.data["secret"] != secret and rotated.data["secret"].startswith("wsk-")
    listing = alice.get(url("keys", id=w.app.id)).content.decode()
    assert secret not in listing and rotated.data["secret"] not in listing
    old = ApiKey.objects.get(pk=created.data["id"])
    assert old.rotated_to_id == rotated.data["id"] and old.expires_at is not None

    revoked = alice.post(url("key-revoke", id=rotated.data["id"]))
    assert revoked.status_code == 200 and revoked.data["revoked_at"] is not None
    assert "secret" not in revoked.data


def test_key_input_is_checked(w):
    alice = as_(w.alice)
    past = {"name": "old", "expires_at": "2001-01-01T00:00:00Z"}
    assert alice.post(url("keys", id=w.app.id), past).status_code == 400
    too_long = {"grace_seconds": 31 * 86400}
    assert alice.post(url("key-rotate", id=w.key.id), too_long).status_code == 400
    assert alice.post(url("key-rotate", id=w.key.id), {}).status_code == 400


# --- 5. personal access tokens ---------------------------------------------------------


def test_a_personal_access_token_authenticates_scripts_until_revoked(w):
    created = as_(w.alice).post(url("tokens"), {"name": "deploy"})
    assert created.status_code == 201
    secret = created.data["secret"]
    assert secret.startswith(services.TOKEN_PREFIX)

    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    tenants = script.get(url("tenants"))
    assert tenants.status_code == 200
    assert [t["slug"] for t in tenants.data["results"]] == [w.a.slug]
    # writes work without a session or CSRF token, and are audited as alice
    app = script.post(url("applications", slug=w.a.slug), {"name": "from-script"})
    assert app.status_code == 201
    event = AuditEvent.objects.get(action="application.created", target_id=str(app.data["id"]))
    assert event.actor == w.alice and event.source_ip == "127.0.0.1"

    listing = script.get(url("tokens"))
    assert listing.data["count"] == 2 and secret not in listing.content.decode()
    mine = next(t for t in listing.data["results"] if t["id"] == created.data["id"])
    assert mine["last_used_at"] is not None and "secret" not in mine

    revoked = script.post(url("token-revoke", id=created.data["id"]))
    assert revoked.status_code == 200 and revoked.data["revoked_at"] is not None
    denied = script.get(url("tenants"))
    assert denied.status_code == 401
    assert denied["WWW-Authenticate"] == "Bearer"


def test_requests_without_valid_credentials_answer_401(w):
    assert APIClient().get(url("tenants")).status_code == 401
    bogus = APIClient()
    bogus.credentials(HTTP_AUTHORIZATION="Bearer wspat-not-a-real-token")
    assert bogus.get(url("tenants")).status_code == 401


def test_tenants_list_paginates_and_create_makes_an_owner(w):
    operator = as_(w.operator)
    page = operator.get(url("tenants"), {"limit": 1})
    assert page.data["count"] == 2 and len(page.data["results"]) == 1 and page.data["next"]
    created = as_(w.bob).post(url("tenants"), {"name": "Bob Labs"})
    assert created.status_code == 201 and created.data["slug"] == "bob-labs"
    assert Membership.objects.get(user=w.bob, tenant__slug="bob-labs").role == Role.OWNER
    assert as_(w.bob).post(url("tenants"), {"name": "Bob Labs"}).status_code == 400


# --- 6. the OpenAPI schema --------------------------------------------------------------


def registered_api_paths() -> dict[str, set[str]]:
    """OpenAPI-style path -> methods, for every route the URL resolver has under /api/v1/."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern

    paths = {}
    for route, pattern in walk(get_resolver().url_patterns, ""):
        if route.startswith(API.lstrip("/")):
            view = getattr(pattern.callback, "view_class", None)
            names = view.http_method_names if view else ()
            methods = {m for m in names if m != "options" and hasattr(view, m)}
            paths["/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)] = methods
    return paths


def test_the_schema_is_valid_openapi_and_covers_every_route():
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    spec = json.loads(response.content)
    assert spec["openapi"].startswith("3.")
    validate(spec)

    registered = registered_api_paths()
    from observability import urls as observability_urls

    calls_api = [p for p in observability_urls.urlpatterns if str(p.pattern).startswith("api/v1/")]
    assert len(registered) == len(api_urls.urlpatterns) + len(calls_api)
    documented = {p: ops for p, ops in spec["paths"].items() if p.startswith(API)}
    assert set(documented) == set(registered)
    operation_ids = []
    for path, ops in documented.items():
        assert set(ops) - {"parameters"} == registered[path], path
        for method, op in ops.items():
            operation_ids.append(op["operationId"])
            ok = [code for code in op["responses"] if code.startswith("2")]
            assert ok, (method, path)
            if ok != ["204"]:
                assert "schema" in op["responses"][ok[0]]["content"]["application/json"]
            if method == "patch":
                assert "requestBody" in op, (method, path)
    assert len(operation_ids) == len(set(operation_ids))
    assert "personalAccessToken" in spec["components"]["securitySchemes"]


def test_the_docs_page_answers():
    assert APIClient().get("/api/docs/").status_code == 200

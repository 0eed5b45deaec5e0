"""The developer portal's pages through the Django test client.

Personas: alice owns tenant A, mallory owns tenant B, victor is a viewer in A.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from portal import selectors, services
from portal.models import (
    ApiKey,
    Application,
    AuditEvent,
    Invitation,
    Membership,
    PersonalAccessToken,
    Role,
    Subscription,
    Tenant,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw-" + name * 3)


def _as(user):
    return services.Actor(user, "127.0.0.1")


@pytest.fixture
def world():
    alice, mallory, victor = _user("alice"), _user("mallory"), _user("victor")
    tenant_a = services.tenant_create(actor=_as(alice), name="Tenant A")
    tenant_b = services.tenant_create(actor=_as(mallory), name="Tenant B")
    Membership.objects.create(user=victor, tenant=tenant_a, role=Role.VIEWER)
    app = services.application_create(actor=_as(alice), tenant=tenant_a, name="billing-bot")
    key = services.api_key_create(actor=_as(alice), tenant=tenant_a, application=app, name="ci")
    return {
        "alice": alice,
        "mallory": mallory,
        "victor": victor,
        "a": tenant_a,
        "b": tenant_b,
        "app": app,
        "key": key.api_key,
        "secret": key.secret,
    }


def _client(client, user):
    client.force_login(user)
    return client


def _product(*, owner, actor, slug="chat-pro", approval_required=True, **fields):
    from gateway.models import LanguageModel

    LanguageModel.objects.get_or_create(name="demo-chat")
    return services.product_create(
        actor=_as(actor),
        owner=owner,
        name=slug.replace("-", " ").title(),
        slug=slug,
        models=["demo-chat"],
        status="published",
        approval_required=approval_required,
        **fields,
    )


# --- every page renders for a member ----------------------------------------------------


def test_every_page_renders_for_a_member(client, world):
    product = _product(owner=world["b"], actor=world["mallory"])
    invitation = services.invitation_create(
        actor=_as(world["alice"]), tenant=world["a"], email="new@example.com", role="developer"
    )
    c = _client(client, world["alice"])
    slug, app = world["a"].slug, world["app"]
    urls = [
        reverse("portal:dashboard"),
        reverse("portal:tenant_create"),
        reverse("portal:applications", args=[slug]),
        reverse("portal:application_create", args=[slug]),
        reverse("portal:application_detail", args=[app.pk]),
        reverse("portal:catalog"),
        reverse("portal:product_detail", args=[product.slug]),
        reverse("portal:approvals"),
        reverse("portal:members", args=[slug]),
        reverse("portal:audit", args=[slug]),
        reverse("portal:tokens"),
        reverse("portal:invitation_accept", args=[invitation.token]),
        "/",
    ]
    for url in urls:
        response = c.get(url)
        assert response.status_code == 200, url
        assert 'id="site-nav"' in response.content.decode(), url


def test_the_nav_has_the_sections_and_the_account_menu(client, world):
    page = _client(client, world["alice"]).get(reverse("portal:dashboard")).content.decode()
    for label in (
        "Dashboard",
        "Applications",
        "Catalog",
        "Approvals",
        "Members",
        "Audit",
        "API docs",
        "Skip to main content",
        "Two-factor authentication",
        "Log out",
    ):
        assert label in page, label
    assert 'href="/accounts/2fa/"' in page
    assert 'href="/api/docs/"' in page
    assert "/static/htmx.min.js" in page


def test_pages_need_a_login(client, world):
    response = client.get(reverse("portal:dashboard"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_logged_out_header_offers_log_in_and_sign_up(client):
    page = client.get("/").content.decode()
    assert "Log in" in page and "Sign up" in page
    assert "/v1/chat/completions" in page and "/api/docs/" in page and "/portal/" in page


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/signup/"])
def test_allauth_pages_use_our_layout(client, url):
    response = client.get(url)
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="site-nav"' in page and "Skip to main content" in page
    assert "waystation.css" in page
    assert 'name="password' in page  # allauth's own form is still there


def test_allauth_settings_pages_use_our_layout(client, world):
    c = _client(client, world["alice"])
    for url in ("/accounts/email/", "/accounts/password/change/", "/accounts/2fa/"):
        response = c.get(url)
        assert response.status_code == 200, url
        assert 'id="site-nav"' in response.content.decode(), url


# --- tenants -------------------------------------------------------------------------


def test_a_user_without_tenant_sees_the_empty_state_and_creates_one(client):
    newcomer = _user("nina")
    c = _client(client, newcomer)
    page = c.get(reverse("portal:dashboard")).content.decode()
    assert "Tenant name" in page and "Create tenant" in page

    response = c.post(reverse("portal:tenant_create"), {"name": "Nina's Team"})

    assert response.status_code == 302 and response["Location"] == reverse("portal:dashboard")
    tenant = Tenant.objects.get(slug="ninas-team")
    assert Membership.objects.get(user=newcomer, tenant=tenant).role == Role.OWNER
    assert "Nina&#x27;s Team" in c.get(reverse("portal:dashboard")).content.decode()


def test_a_taken_tenant_name_is_a_form_error(client, world):
    c = _client(client, _user("nina"))
    response = c.post(reverse("portal:tenant_create"), {"name": "Tenant A"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_the_tenant_switcher_changes_the_current_tenant(client, world):
    Membership.objects.create(user=world["alice"], tenant=world["b"], role=Role.DEVELOPER)
    c = _client(client, world["alice"])
    page = c.get(reverse("portal:dashboard")).content.decode()
    assert 'name="tenant"' in page  # the switcher shows for users in several tenants

    next_url = reverse("portal:applications", args=[world["a"].slug])
    response = c.post(
        reverse("portal:tenant_switch"), {"tenant": world["b"].slug, "next": next_url}
    )

    assert response["Location"] == reverse("portal:applications", args=[world["b"].slug])
    assert c.session[selectors.SESSION_TENANT] == world["b"].slug


def test_switching_to_a_strangers_tenant_is_404(client, world):
    c = _client(client, world["mallory"])
    response = c.post(reverse("portal:tenant_switch"), {"tenant": world["a"].slug})
    assert response.status_code == 404


def test_the_dashboard_shows_counts(client, world):
    product = _product(owner=world["b"], actor=world["mallory"], approval_required=False)
    services.subscription_request(
        actor=_as(world["alice"]), application=world["app"], product=product
    )
    page = _client(client, world["alice"]).get(reverse("portal:dashboard")).content.decode()
    assert "Tenant A" in page and "billing-bot" in page
    assert re.search(r'stat-value">1</span>\s*<span class="stat-label">Application<', page)
    assert re.search(r'stat-value">1</span>\s*<span class="stat-label">Active subscription<', page)


# --- other tenants' objects are 404 --------------------------------------------------


def test_mallory_gets_404_for_tenant_a_pages(client, world):
    c = _client(client, world["mallory"])
    slug, app, key = world["a"].slug, world["app"], world["key"]
    alice_membership = Membership.objects.get(user=world["alice"], tenant=world["a"])
    for url in (
        reverse("portal:applications", args=[slug]),
        reverse("portal:application_create", args=[slug]),
        reverse("portal:application_detail", args=[app.pk]),
        reverse("portal:members", args=[slug]),
        reverse("portal:audit", args=[slug]),
    ):
        assert c.get(url).status_code == 404, url
    for url, data in (
        (reverse("portal:key_create", args=[app.pk]), {"name": "x"}),
        (reverse("portal:key_rotate", args=[key.pk]), {"grace": "0"}),
        (reverse("portal:key_revoke", args=[key.pk]), {}),
        (reverse("portal:member_role", args=[slug, alice_membership.pk]), {"role": "viewer"}),
        (reverse("portal:member_remove", args=[slug, alice_membership.pk]), {}),
        (reverse("portal:member_invite", args=[slug]), {"email": "m@x.io", "role": "owner"}),
    ):
        assert c.post(url, data).status_code == 404, url
    key.refresh_from_db()
    assert key.revoked_at is None and key.rotated_to is None
    assert Membership.objects.filter(tenant=world["a"]).count() == 2


def test_a_member_id_of_another_tenant_is_404(client, world):
    c = _client(client, world["mallory"])
    alice_membership = Membership.objects.get(user=world["alice"], tenant=world["a"])
    url = reverse("portal:member_remove", args=[world["b"].slug, alice_membership.pk])
    assert c.post(url).status_code == 404


# --- viewers can't write -------------------------------------------------------------


def test_victor_the_viewer_gets_403_for_writes(client, world):
    c = _client(client, world["victor"])
    slug, app, key = world["a"].slug, world["app"], world["key"]
    assert c.get(reverse("portal:application_create", args=[slug])).status_code == 403
    response = c.post(reverse("portal:application_create", args=[slug]), {"name": "sneaky"})
    assert response.status_code == 403 and "Not allowed" in response.content.decode()
    assert c.post(reverse("portal:key_create", args=[app.pk]), {"name": "x"}).status_code == 403
    assert c.post(reverse("portal:key_rotate", args=[key.pk]), {"grace": "0"}).status_code == 403
    assert c.post(reverse("portal:key_revoke", args=[key.pk])).status_code == 403
    invite = {"email": "v@x.io", "role": "developer"}
    assert c.post(reverse("portal:member_invite", args=[slug]), invite).status_code == 403
    assert c.get(reverse("portal:audit", args=[slug])).status_code == 403
    assert not Application.objects.filter(name="sneaky").exists()
    key.refresh_from_db()
    assert key.revoked_at is None and key.rotated_to is None


def test_victor_sees_pages_without_write_forms(client, world):
    c = _client(client, world["victor"])
    detail = c.get(reverse("portal:application_detail", args=[world["app"].pk])).content.decode()
    assert world["key"].prefix in detail
    assert "Create key" not in detail and "Revoke" not in detail and "Rotate" not in detail
    apps = c.get(reverse("portal:applications", args=[world["a"].slug])).content.decode()
    assert "New application" not in apps
    members = c.get(reverse("portal:members", args=[world["a"].slug])).content.decode()
    assert "Send invitation" not in members and ">Save<" not in members


def test_htmx_writes_answer_403_and_400_as_alerts(client, world):
    c = _client(client, world["victor"])
    response = c.post(reverse("portal:key_revoke", args=[world["key"].pk]), **HTMX)
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#htmx-alerts"
    assert "<html" not in response.content.decode()

    services.api_key_revoke(actor=_as(world["alice"]), api_key=world["key"])
    c = _client(client, world["alice"])
    response = c.post(reverse("portal:key_rotate", args=[world["key"].pk]), {"grace": "0"}, **HTMX)
    assert response.status_code == 400
    assert "revoked key" in response.content.decode()


# --- applications and keys -----------------------------------------------------------


def test_creating_an_application_and_a_key_shows_the_secret_once(client, world):
    c = _client(client, world["alice"])
    slug = world["a"].slug
    page = c.get(reverse("portal:application_create", args=[slug])).content.decode()
    for label in ("Name", "Description", "Create application"):
        assert label in page

    response = c.post(
        reverse("portal:application_create", args=[slug]),
        {"name": "chat-ui", "description": "The web chat"},
    )

    app = Application.objects.get(tenant=world["a"], name="chat-ui")
    assert response["Location"] == reverse("portal:application_detail", args=[app.pk])
    detail = c.get(response["Location"]).content.decode()
    assert "No keys yet" in detail and "Key name" in detail and "Expires at" in detail

    response = c.post(reverse("portal:key_create", args=[app.pk]), {"name": "prod"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    secret = re.search(r'id="new-key-secret"[^>]*>(wsk-[^<]+)<', page).group(1)
    assert 'data-copy="new-key-secret"' in page and ">Copy<" in page
    key = ApiKey.objects.get(application=app, name="prod")
    assert key.secret_hash == services.hash_secret(secret) and secret.startswith(key.prefix)

    again = c.get(reverse("portal:application_detail", args=[app.pk])).content.decode()
    assert secret not in again and "new-key-secret" not in again
    assert key.prefix in again


def test_a_duplicate_application_name_is_a_form_error(client, world):
    c = _client(client, world["alice"])
    response = c.post(
        reverse("portal:application_create", args=[world["a"].slug]), {"name": "billing-bot"}
    )
    assert response.status_code == 200
    assert "already has an application" in response.content.decode()


def test_a_key_with_an_expiry(client, world):
    c = _client(client, world["alice"])
    when = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    c.post(
        reverse("portal:key_create", args=[world["app"].pk]), {"name": "temp", "expires_at": when}
    )
    key = ApiKey.objects.get(name="temp")
    assert key.expires_at is not None
    assert timedelta(days=2) < key.expires_at - timezone.now() < timedelta(days=4)

    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = c.post(
        reverse("portal:key_create", args=[world["app"].pk]), {"name": "old", "expires_at": past}
    )
    assert "must be in the future" in response.content.decode()
    assert not ApiKey.objects.filter(name="old").exists()


def test_rotate_issues_a_new_key_and_the_old_one_expires_after_the_grace(client, world):
    c = _client(client, world["alice"])
    old = world["key"]

    response = c.post(reverse("portal:key_rotate", args=[old.pk]), {"grace": "3600"})

    assert response.status_code == 200
    old.refresh_from_db()
    assert old.rotated_to is not None
    assert timedelta(minutes=59) < old.expires_at - timezone.now() <= timedelta(hours=1)
    page = response.content.decode()
    secret = re.search(r'id="new-key-secret"[^>]*>(wsk-[^<]+)<', page).group(1)
    assert old.rotated_to.secret_hash == services.hash_secret(secret)
    assert "Rotated" in page


def test_rotate_by_htmx_swaps_the_keys_section(client, world):
    c = _client(client, world["alice"])
    response = c.post(reverse("portal:key_rotate", args=[world["key"].pk]), {"grace": "0"}, **HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<section id="keys"') and "new-key-secret" in page
    world["key"].refresh_from_db()
    assert world["key"].expires_at <= timezone.now()


def test_an_unknown_grace_period_is_refused(client, world):
    c = _client(client, world["alice"])
    response = c.post(reverse("portal:key_rotate", args=[world["key"].pk]), {"grace": "99999"})
    assert response.status_code == 302
    world["key"].refresh_from_db()
    assert world["key"].rotated_to is None


def test_revoke_by_plain_post_and_by_htmx(client, world):
    c = _client(client, world["alice"])
    response = c.post(reverse("portal:key_revoke", args=[world["key"].pk]))
    assert response["Location"] == reverse("portal:application_detail", args=[world["app"].pk])
    world["key"].refresh_from_db()
    assert world["key"].revoked_at is not None
    assert "Revoked" in c.get(response["Location"]).content.decode()

    other = services.api_key_create(
        actor=_as(world["alice"]), tenant=world["a"], application=world["app"], name="two"
    ).api_key
    response = c.post(reverse("portal:key_revoke", args=[other.pk]), **HTMX)
    row = response.content.decode()
    assert response.status_code == 200
    assert row.lstrip().startswith(f'<tr id="key-{other.pk}"') and "Revoked" in row
    other.refresh_from_db()
    assert other.revoked_at is not None
    assert AuditEvent.objects.filter(action="key.revoked", tenant=world["a"]).count() == 2


def test_lists_are_paginated(client, world):
    for i in range(25):
        Application.objects.create(tenant=world["a"], name=f"app-{i:02d}")
    c = _client(client, world["alice"])
    url = reverse("portal:applications", args=[world["a"].slug])
    first = c.get(url).content.decode()
    second = c.get(url + "?page=2").content.decode()
    assert "Page 1 of 2" in first and "app-00" in first and "app-24" not in first
    assert "app-24" in second


# --- catalog and subscriptions -------------------------------------------------------


def test_the_catalog_shows_cards_with_badges(client, world):
    _product(owner=world["b"], actor=world["mallory"])
    services.product_create(
        actor=services.SYSTEM,
        owner=None,
        name="Old API",
        slug="old-api",
        status="deprecated",
        sunset_date="2031-01-31",
    )
    services.product_create(
        actor=services.SYSTEM,
        owner=world["b"],
        name="Secret Draft",
        slug="secret-draft",
        status="draft",
    )
    page = _client(client, world["alice"]).get(reverse("portal:catalog")).content.decode()
    assert "Chat Pro" in page and "approval required" in page
    assert "Old API" in page and "sunset 2031-01-31" in page
    assert "Secret Draft" not in page  # another tenant's draft


def test_the_product_page_has_generated_docs(client, world):
    product = _product(owner=world["b"], actor=world["mallory"])
    page = (
        _client(client, world["alice"])
        .get(reverse("portal:product_detail", args=[product.slug]), HTTP_HOST="gw.example.com")
        .content.decode()
    )
    # The examples point at the address the portal was reached on.
    assert "POST http://gw.example.com/v1/chat/completions" in page
    assert "demo-chat" in page and "$WAYSTATION_API_KEY" in page
    assert "from openai import OpenAI" in page and "fetch(" in page
    assert reverse("portal:subscribe", args=[product.slug]) in page
    assert (
        ">Application</label>" in page and ">Subscribe</button>" in page and "billing-bot" in page
    )


def test_another_tenants_private_product_is_404(client, world):
    services.product_create(
        actor=_as(world["mallory"]),
        owner=world["b"],
        name="Internal",
        slug="internal",
        status="published",
        visibility="private",
    )
    response = _client(client, world["alice"]).get(
        reverse("portal:product_detail", args=["internal"])
    )
    assert response.status_code == 404


def test_subscribing_with_approval_goes_through_the_approvers_queue(client, world):
    product = _product(owner=world["b"], actor=world["mallory"])
    alice = _client(client, world["alice"])

    response = alice.post(
        reverse("portal:subscribe", args=[product.slug]), {"application": world["app"].pk}
    )

    assert response.status_code == 302
    sub = Subscription.objects.get(application=world["app"], product=product)
    assert sub.status == Subscription.Status.PENDING
    page = alice.get(reverse("portal:product_detail", args=[product.slug])).content.decode()
    assert "Pending approval" in page
    assert f'id="approval-{sub.pk}"' not in alice.get(reverse("portal:approvals")).content.decode()

    mallory = _client(client, world["mallory"])
    queue = mallory.get(reverse("portal:approvals")).content.decode()
    assert (
        f'id="approval-{sub.pk}"' in queue
        and "billing-bot" in queue
        and "Approve" in queue
        and "Reject" in queue
    )
    assert "Reason" in queue
    assert re.search(r'class="count" id="pending-count">1<', queue)

    response = mallory.post(
        reverse("portal:approval_decide", args=[sub.pk]), {"decision": "approve"}
    )

    assert response.status_code == 302
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE and sub.decided_by == world["mallory"]
    assert (
        f'id="approval-{sub.pk}"' not in mallory.get(reverse("portal:approvals")).content.decode()
    )


def test_rejecting_needs_a_reason(client, world):
    product = _product(owner=world["b"], actor=world["mallory"])
    sub = services.subscription_request(
        actor=_as(world["alice"]), application=world["app"], product=product
    )
    mallory = _client(client, world["mallory"])
    url = reverse("portal:approval_decide", args=[sub.pk])

    response = mallory.post(url, {"decision": "reject", "reason": ""}, follow=True)
    assert "Say why" in response.content.decode()
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.PENDING

    mallory.post(url, {"decision": "reject", "reason": "Not for production use"})
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.REJECTED and sub.reason == "Not for production use"


def test_only_approvers_decide(client, world):
    product = _product(owner=world["a"], actor=world["alice"], slug="a-api")
    services.application_create(actor=_as(world["mallory"]), tenant=world["b"], name="m-app")
    sub = services.subscription_request(
        actor=_as(world["mallory"]),
        application=Application.objects.get(name="m-app"),
        product=product,
    )
    victor = _client(client, world["victor"])
    assert "m-app" not in victor.get(reverse("portal:approvals")).content.decode()
    response = victor.post(
        reverse("portal:approval_decide", args=[sub.pk]), {"decision": "approve"}
    )
    assert response.status_code == 403
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.PENDING


def test_a_subscription_without_approval_is_active_and_can_be_cancelled(client, world):
    product = _product(owner=world["b"], actor=world["mallory"], approval_required=False)
    alice = _client(client, world["alice"])
    alice.post(reverse("portal:subscribe", args=[product.slug]), {"application": world["app"].pk})
    sub = Subscription.objects.get(application=world["app"], product=product)
    assert sub.status == Subscription.Status.ACTIVE
    detail = alice.get(reverse("portal:application_detail", args=[world["app"].pk]))
    assert "Chat Pro" in detail.content.decode() and ">Cancel<" in detail.content.decode()

    alice.post(reverse("portal:subscription_cancel", args=[sub.pk]))

    sub.refresh_from_db()
    assert sub.status == Subscription.Status.REVOKED


def test_subscribing_another_tenants_application_is_refused(client, world):
    product = _product(owner=world["b"], actor=world["mallory"], approval_required=False)
    m_app = services.application_create(
        actor=_as(world["mallory"]), tenant=world["b"], name="m-app"
    )
    alice = _client(client, world["alice"])
    alice.post(reverse("portal:subscribe", args=[product.slug]), {"application": m_app.pk})
    assert not Subscription.objects.filter(application=m_app).exists()


def test_a_viewer_has_no_subscribe_form(client, world):
    product = _product(owner=world["b"], actor=world["mallory"])
    victor = _client(client, world["victor"])
    page = victor.get(reverse("portal:product_detail", args=[product.slug])).content.decode()
    assert reverse("portal:subscribe", args=[product.slug]) not in page
    response = victor.post(
        reverse("portal:subscribe", args=[product.slug]), {"application": world["app"].pk}
    )
    assert response.status_code == 403


# --- members -------------------------------------------------------------------------


def test_members_change_role_invite_and_remove(client, world):
    alice = _client(client, world["alice"])
    slug = world["a"].slug
    page = alice.get(reverse("portal:members", args=[slug])).content.decode()
    for label in ("victor", "Email", "Role", "Send invitation", ">Save<"):
        assert label in page, label

    victor_m = Membership.objects.get(user=world["victor"], tenant=world["a"])
    alice.post(reverse("portal:member_role", args=[slug, victor_m.pk]), {"role": "developer"})
    victor_m.refresh_from_db()
    assert victor_m.role == Role.DEVELOPER

    response = alice.post(
        reverse("portal:member_invite", args=[slug]), {"email": "Dana@Example.com", "role": "admin"}
    )
    assert response.status_code == 302
    invitation = Invitation.objects.get(tenant=world["a"])
    assert invitation.email == "dana@example.com" and invitation.role == Role.ADMIN
    assert "dana@example.com" in alice.get(reverse("portal:members", args=[slug])).content.decode()

    alice.post(reverse("portal:member_remove", args=[slug, victor_m.pk]))
    assert not Membership.objects.filter(pk=victor_m.pk).exists()


def test_the_last_owner_stays(client, world):
    alice = _client(client, world["alice"])
    me = Membership.objects.get(user=world["alice"], tenant=world["a"])
    response = alice.post(
        reverse("portal:member_role", args=[world["a"].slug, me.pk]),
        {"role": "viewer"},
        follow=True,
    )
    assert "at least one owner" in response.content.decode()
    me.refresh_from_db()
    assert me.role == Role.OWNER


def test_an_invalid_invitation_email_is_a_form_error(client, world):
    alice = _client(client, world["alice"])
    response = alice.post(
        reverse("portal:member_invite", args=[world["a"].slug]),
        {"email": "not-an-email", "role": "developer"},
    )
    assert response.status_code == 200
    assert "valid email" in response.content.decode()


def test_accepting_an_invitation_joins_the_tenant(client, world):
    invitation = services.invitation_create(
        actor=_as(world["alice"]), tenant=world["a"], email="dana@example.com", role="developer"
    )
    dana = _user("dana")
    c = _client(client, dana)
    url = reverse("portal:invitation_accept", args=[invitation.token])
    assert "Join Tenant A" in c.get(url).content.decode()

    response = c.post(url)

    assert response["Location"] == reverse("portal:dashboard")
    assert Membership.objects.get(user=dana, tenant=world["a"]).role == Role.DEVELOPER
    assert c.get(url).status_code == 404  # used up


# --- audit ---------------------------------------------------------------------------


def test_the_audit_log_lists_the_tenants_events(client, world):
    alice = _client(client, world["alice"])
    alice.post(reverse("portal:key_revoke", args=[world["key"].pk]), REMOTE_ADDR="203.0.113.9")
    page = alice.get(reverse("portal:audit", args=[world["a"].slug])).content.decode()
    assert "key.revoked" in page and "application.created" in page
    assert "203.0.113.9" in page and "alice" in page
    assert "Tenant B" not in page


# --- personal access tokens ----------------------------------------------------------


def test_personal_tokens_show_the_secret_once_and_revoke(client, world):
    alice = _client(client, world["alice"])
    response = alice.post(reverse("portal:tokens"), {"name": "laptop"})
    page = response.content.decode()
    secret = re.search(r'id="new-token-secret"[^>]*>(wspat-[^<]+)<', page).group(1)
    token = PersonalAccessToken.objects.get(user=world["alice"], name="laptop")
    assert token.secret_hash == services.hash_secret(secret)
    assert secret not in alice.get(reverse("portal:tokens")).content.decode()

    assert (
        _client(client, world["mallory"])
        .post(reverse("portal:token_revoke", args=[token.pk]))
        .status_code
        == 404
    )
    alice = _client(client, world["alice"])
    alice.post(reverse("portal:token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked", actor=world["alice"]).exists()

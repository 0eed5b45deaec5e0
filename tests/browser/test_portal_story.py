"""The developer portal end to end, in Chromium: sign up, confirm the email, log in, create a
tenant and an application, subscribe it to a model product, get it approved by the operator,
create a key, stream a completion with the official openai SDK, revoke the key.

Labels and button names are the contract with the portal pages. Screenshots after each step:
test-artifacts/screenshots/NN-name.png.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import openai
import pytest
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(300),
]

PASSWORD = "Waystation-story-2024!"
# allauth rate-limits confirmation mails per address in the cache, which outlives the test
# database under Redis: a fresh address each run.
_RUN = uuid.uuid4().hex[:8]
DEVELOPER = {"email": f"dana-{_RUN}@example.com", "username": f"dana-{_RUN}"}
OPERATOR = {"email": "operator@example.com", "username": "operator"}
TENANT = "Acme Robotics"
APP = "Support bot"
HELLO = [{"role": "user", "content": "Tell me about the waystation"}]


def eventually(check, timeout: float = 10.0, interval: float = 0.1):
    """check() until it returns something truthy; fails with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s")
        time.sleep(interval)


# --- database side (run through the `db` fixture: off Playwright's thread) -------------


def setup_world() -> None:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from gateway import catalog
    from portal.services import SYSTEM, product_create
    from tests.gateway.helpers import DEMO, apply_yaml

    apply_yaml(DEMO)
    operator = get_user_model().objects.create_user(
        username=OPERATOR["username"], email=OPERATOR["email"], password=PASSWORD, is_staff=True
    )
    EmailAddress.objects.create(user=operator, email=operator.email, verified=True, primary=True)
    product_create(
        actor=SYSTEM,
        owner=None,
        name="Demo chat",
        slug="demo-chat",
        models=["demo-chat"],
        status="published",
        approval_required=True,
    )
    catalog.invalidate()


def email_verified(email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(email=email, verified=True).exists()


def tenant_slug_owned_by(name: str, username: str) -> str | None:
    from portal.models import Membership

    membership = (
        Membership.objects.filter(tenant__name=name, user__username=username, role="owner")
        .select_related("tenant")
        .first()
    )
    return membership.tenant.slug if membership else None


def application_id(tenant_slug: str, name: str) -> int | None:
    from portal.models import Application

    app = Application.objects.filter(tenant__slug=tenant_slug, name=name).first()
    return app.pk if app else None


def subscription_status(app_id: int, product_slug: str) -> str | None:
    from portal.models import Subscription

    sub = Subscription.objects.filter(application_id=app_id, product__slug=product_slug).first()
    return sub.status if sub else None


def key_revoked(app_id: int, name: str) -> bool:
    from portal.models import ApiKey

    return ApiKey.objects.filter(
        application_id=app_id, name=name, revoked_at__isnull=False
    ).exists()


# --- browser side ------------------------------------------------------------------------


def field(page, label: str):
    """The control labelled exactly `label`; Django's label suffix (a colon) is allowed."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}\s*:?\s*$"))


def log_in(page, login: str, password: str) -> None:
    page.goto("/accounts/login/")
    field(page, "Login").fill(login)  # allauth: username or email
    field(page, "Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(re.compile(r"/portal/"))


def create_key(page, app_id: int, name: str) -> str:
    page.goto(f"/portal/applications/{app_id}/")
    field(page, "Key name").fill(name)
    page.get_by_role("button", name="Create key").click()
    secret_el = page.locator("#new-key-secret")
    secret_el.wait_for(state="visible")
    tag = secret_el.evaluate("el => el.tagName")
    secret = secret_el.input_value() if tag in ("INPUT", "TEXTAREA") else secret_el.inner_text()
    secret = secret.strip()
    assert secret.startswith("wsk-") and len(secret) >= 40, secret
    return secret


def button_in_row(page, text: str, button: str):
    """The button named `button` in the row (table row or list item) that shows `text`."""
    wanted = page.get_by_role("button", name=button)
    for role in ("row", "listitem"):
        rows = page.get_by_role(role).filter(has_text=text).filter(has=wanted)
        if rows.count():
            return rows.last.get_by_role("button", name=button)
    return (
        page.locator("*")
        .filter(has_text=text)
        .filter(has=wanted)
        .last.get_by_role("button", name=button)
    )


def sdk(base_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=secret, max_retries=0)


def test_developer_signs_up_subscribes_calls_and_revokes(
    gateway, db, new_page, shot, confirmation_path
):
    db(setup_world)
    base = gateway.base_url

    # 1-2. Sign up, confirm the email from the mail, log in.
    dev = new_page("developer")
    dev.goto("/accounts/signup/")
    field(dev, "Email").fill(DEVELOPER["email"])
    field(dev, "Username").fill(DEVELOPER["username"])
    field(dev, "Password").fill(PASSWORD)
    field(dev, "Password (again)").fill(PASSWORD)
    shot(dev, "signup-form")
    dev.get_by_role("button", name="Sign Up").click()
    dev.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    shot(dev, "verification-sent")

    dev.goto(confirmation_path(DEVELOPER["email"]))
    shot(dev, "confirm-email")
    dev.get_by_role("button", name="Confirm").click()
    eventually(lambda: db(email_verified, DEVELOPER["email"]))
    dev.wait_for_load_state()
    shot(dev, "email-confirmed")

    # allauth may log in on confirmation; come back as a new session and log in for real.
    dev.context.clear_cookies()
    log_in(dev, DEVELOPER["username"], PASSWORD)
    shot(dev, "logged-in")

    # 3. A tenant, then an application in it.
    dev.goto("/portal/")
    field(dev, "Tenant name").fill(TENANT)
    dev.get_by_role("button", name="Create tenant").click()
    slug = eventually(lambda: db(tenant_slug_owned_by, TENANT, DEVELOPER["username"]))
    dev.wait_for_load_state()
    shot(dev, "tenant-created")

    dev.goto(f"/portal/t/{slug}/applications/new/")
    field(dev, "Name").fill(APP)
    shot(dev, "application-form")
    dev.get_by_role("button", name="Create application").click()
    app_id = eventually(lambda: db(application_id, slug, APP))
    dev.wait_for_load_state()
    shot(dev, "application-created")

    # Not subscribed yet: a key of the application is refused the model (403).
    probe = create_key(dev, app_id, "probe")
    shot(dev, "probe-key-created")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk(base, probe).chat.completions.create(model="demo-chat", messages=HELLO)
    assert refused.value.status_code == 403

    # 4. The catalog, the product, subscribe: pending (approval required).
    dev.goto("/portal/catalog/")
    expect(dev.get_by_text("Demo chat").first).to_be_visible()
    shot(dev, "catalog")
    dev.goto("/portal/catalog/demo-chat/")
    application = field(dev, "Application")
    option = application.locator("option").filter(has_text=APP).first
    application.select_option(option.get_attribute("value"))
    shot(dev, "product")
    dev.get_by_role("button", name="Subscribe").click()
    eventually(lambda: db(subscription_status, app_id, "demo-chat") == "pending")
    dev.wait_for_load_state()
    assert re.search(r"pending", dev.locator("body").inner_text(), re.I)
    shot(dev, "subscription-pending")

    # 5. The operator approves it, in a browser of their own.
    ops = new_page("operator")
    log_in(ops, OPERATOR["username"], PASSWORD)
    ops.goto("/portal/approvals/")
    assert APP in ops.locator("body").inner_text()
    shot(ops, "approvals-queue")
    button_in_row(ops, APP, "Approve").click()
    eventually(lambda: db(subscription_status, app_id, "demo-chat") == "active")
    ops.wait_for_load_state()
    shot(ops, "approved")

    # 6. Back as the developer: a key for the application, shown once.
    secret = create_key(dev, app_id, "story key")
    shot(dev, "key-created")

    # 7. The official SDK streams through the gateway with it, in several chunks.
    stream = sdk(base, secret).chat.completions.create(
        model="demo-chat", messages=HELLO, stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 3, pieces
    assert "".join(pieces).endswith("You said: Tell me about the waystation")

    # 8. Revoke it in the browser: within a second the gateway answers 401.
    dev.goto(f"/portal/applications/{app_id}/")
    button_in_row(dev, "story key", "Revoke").click()
    eventually(lambda: db(key_revoked, app_id, "story key"))
    dev.wait_for_load_state()
    shot(dev, "key-revoked")
    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError) as rejected:
        sdk(base, secret).chat.completions.create(model="demo-chat", messages=HELLO)
    assert rejected.value.status_code == 401
    # Only that key: the probe key of the same application works now that it is subscribed.
    reply = sdk(base, probe).chat.completions.create(model="demo-chat", messages=HELLO)
    assert reply.choices[0].message.content.endswith("You said: Tell me about the waystation")

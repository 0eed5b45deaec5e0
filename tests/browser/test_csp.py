"""The Content-Security-Policy in Chromium: the portal's scripts all run under it (no inline
script, no eval). A key's secret is copied (static/waystation.js), a key is revoked through
htmx, the live tail opens its WebSocket (connect-src 'self'), and the browser reports no
violation on any page visited."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_portal_story import create_key, log_in
from tests.security import tally

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(180),
]

PASSWORD = "Waystation-csp-2024!"
OWNER = f"cspo-{uuid.uuid4().hex[:8]}"
SLUG = "csp-works"


def setup_world() -> int:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from portal import services

    owner = get_user_model().objects.create_user(OWNER, f"{OWNER}@example.com", PASSWORD)
    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    actor = services.Actor(owner)
    tenant = services.tenant_create(actor=actor, name="CSP Works", slug=SLUG)
    return services.application_create(actor=actor, tenant=tenant, name="csp-bot").pk


def test_the_portals_scripts_run_under_the_policy_without_a_violation(db, new_page, gateway):
    app_id = db(setup_world)
    page = new_page("csp")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.base_url)
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.on("pageerror", lambda exc: violations.append(f"page error: {exc}"))

    # a key is created and its secret copied by static/waystation.js
    log_in(page, OWNER, PASSWORD)
    secret = create_key(page, app_id, "csp")
    copy = page.locator("[data-copy]").first
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # htmx revokes it in place, its CSRF token from <body hx-headers>
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("tbody tr").filter(has_text="csp").first).to_contain_text(
        re.compile("Revoked", re.I)
    )

    # the live tail's WebSocket is same-origin: connect-src 'self' lets it open
    page.goto(f"/portal/t/{SLUG}/tail/")
    expect(page.locator("#tail-state")).to_have_text("Live")

    visited = ["/portal/", f"/portal/t/{SLUG}/calls/", f"/portal/t/{SLUG}/analytics/"]
    for path in visited:
        page.goto(path)
        page.wait_for_load_state("networkidle")

    assert violations == []
    tally.add("web: browser pages without a CSP violation", len(visited) + 2)

    # and the listener hears a violation: an injected inline handler is refused, not run
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', "
        '\'<img id="probe" src="data:," onerror="document.title=1">\')'
    )
    page.wait_for_function("() => document.getElementById('probe').complete")
    page.wait_for_timeout(200)
    assert page.title() != "1"
    assert any("inline event handler" in v for v in violations), violations

"""The live tail in Chromium: a tenant owner watches the tail page while the gateway is called
with the openai SDK; their calls appear on top as they are stored, another tenant's never do;
filters and pause apply. Screenshot: test-artifacts/screenshots/NN-live-tail*.png.

Usage reaches the database (and so the tail) when the usage stream is drained: a Celery beat
task in production, a background "pump" thread here.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path

import openai
import pytest
from playwright.sync_api import expect

from tests.browser.test_portal_story import field, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(300),
]

PASSWORD = "Waystation-tail-2024!"
_RUN = uuid.uuid4().hex[:8]
OWNER = f"tess-{_RUN}"
SLUG = "tail-works"
OTHER = "tail-rivals"
HELLO = [{"role": "user", "content": "Hello tail"}]


def setup_world() -> tuple[str, str]:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from gateway import catalog
    from portal import services
    from tests.gateway.helpers import DEMO, apply_yaml, new_key

    apply_yaml(DEMO)
    owner = get_user_model().objects.create_user(OWNER, f"{OWNER}@example.com", PASSWORD)
    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    services.tenant_create(actor=services.Actor(owner), name="Tail Works", slug=SLUG)
    mine, theirs = new_key(tenant=SLUG), new_key(tenant=OTHER)
    catalog.invalidate()
    return mine, theirs


@contextlib.contextmanager
def usage_pump(gateway, interval: float = 0.2):
    """Flush the gateway's usage buffer and drain the stream into the database, repeatedly."""
    from django.conf import settings
    from django.db import connections

    from billing import usage_stream
    from gateway import usage

    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    gateway.call(usage.flush())
                    if settings.DISTRIBUTED:
                        usage_stream.drain(reclaim_idle_ms=0)
                except Exception as exc:  # keep pumping; the test's own timeout decides
                    print(f"usage pump: {exc!r}")
                stop.wait(interval)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="usage-pump", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


def sdk(base_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=secret, max_retries=0)


def chat(client: openai.OpenAI, request_id: str, **headers: str) -> None:
    client.chat.completions.create(
        model="demo-chat",
        messages=HELLO,
        extra_headers={"x-request-id": request_id, **headers},
    )


def rid(label: str) -> str:
    return f"tail-{label}-{uuid.uuid4().hex[:10]}"


def test_the_live_tail_shows_the_tenants_calls_as_they_are_stored(gateway, db, new_page, shot):
    mine, theirs = (sdk(gateway.base_url, secret) for secret in db(setup_world))

    page = new_page("watcher")
    log_in(page, OWNER, PASSWORD)
    page.goto(f"/portal/t/{SLUG}/usage/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Live tail").click()
    page.wait_for_url(f"**/portal/t/{SLUG}/tail/")
    expect(page.get_by_role("link", name="Live tail")).to_have_attribute("aria-current", "page")
    expect(page.locator("#tail-state")).to_have_text("Live")
    rows = page.locator("#tail-rows tr[data-request-id]")

    with usage_pump(gateway):
        # Another tenant's call first, then ours: once ours is shown, theirs was stored too.
        other, first = rid("other"), rid("first")
        chat(theirs, other)
        chat(mine, first, **{"x-waystation-user": "customer-7", "x-waystation-tags": "beta"})
        row = page.locator(f'#tail-rows tr[data-request-id="{first}"]')
        expect(row).to_be_visible()
        for text in ("200", "chat", "demo-chat", "demo", "customer-7", "Details"):
            expect(row).to_contain_text(text)
        expect(row.get_by_role("link", name=f"Details of {first}")).to_have_attribute(
            "href", f"/portal/t/{SLUG}/calls/{first}/"
        )
        expect(page.locator("#tail-empty")).to_have_count(0)
        assert page.locator(f'tr[data-request-id="{other}"]').count() == 0

        # The newest call goes on top.
        second = rid("second")
        chat(mine, second)
        expect(rows.first).to_have_attribute("data-request-id", second)
        expect(rows).to_have_count(2)
        shot(page, "live-tail")

        # Filters: only embeddings; a chat call made before the embedding never shows.
        field(page, "Model").fill("embed")
        expect(page.locator("#tail-filter-summary")).to_have_text(
            "Only calls with model contains “embed”."
        )
        hidden, embedding = rid("hidden-chat"), rid("embedding")
        chat(mine, hidden)
        mine.embeddings.create(
            model="demo-embed", input="tail me", extra_headers={"x-request-id": embedding}
        )
        expect(page.locator(f'#tail-rows tr[data-request-id="{embedding}"]')).to_be_visible()
        assert page.locator(f'tr[data-request-id="{hidden}"]').count() == 0
        shot(page, "live-tail-filtered")

        # Pause: calls are held, and shown on resume.
        field(page, "Model").fill("")
        expect(page.locator("#tail-filter-summary")).to_have_text("All calls.")
        page.get_by_role("button", name="Pause").click()
        held = rid("held")
        chat(mine, held)
        expect(page.locator("#tail-paused-count")).to_have_text("1 new while paused")
        assert page.locator(f'tr[data-request-id="{held}"]').count() == 0
        page.get_by_role("button", name="Resume").click()
        expect(rows.first).to_have_attribute("data-request-id", held)
        expect(page.locator("#tail-paused-count")).to_have_text("")

    assert page.locator(f'tr[data-request-id="{other}"]').count() == 0


def test_a_stranger_cannot_open_anothers_tail(gateway, db, new_page):
    db(setup_world)
    page = new_page("stranger")
    log_in(page, OWNER, PASSWORD)
    response = page.goto(f"/portal/t/{OTHER}/tail/")
    assert response is not None and response.status == 404

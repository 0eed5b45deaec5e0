"""The prompt playground in Chromium: a developer runs two versions of a prompt side by side
on the same input, through the live gateway and its demo provider, and sees both answers
stream in with their tokens, cost and latency; a missing required variable is flagged at
its field.

Screenshots: test-artifacts/screenshots/NN-playground-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(180),
]

PASSWORD = "Waystation-playground-2024!"
USER = {"username": "devon", "email": "devon@example.com"}
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "What to classify"}},
    "required": ["text"],
}
SAID = "The gateway is delightful"


def setup_world() -> str:
    """Devon owns tenant acme, whose prompt `sentiment` has v1 (production) and v2."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from gateway import catalog
    from portal import services
    from prompts import services as library
    from tests.gateway.helpers import DEMO, apply_yaml

    apply_yaml(DEMO)
    catalog.invalidate()
    user = get_user_model().objects.create_user(**USER, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    actor = services.Actor(user)
    tenant = services.tenant_create(actor=actor, name="Acme", slug="acme")
    prompt = library.prompt_create(actor=actor, tenant=tenant, slug="sentiment", name="Sentiment")
    versions = [
        library.version_create(
            actor=actor,
            prompt=prompt,
            model="demo-chat",
            input_schema=SCHEMA,
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": "Text: {{ text }}"},
            ],
        )  # fmt: skip
        for system in ("You classify sentiment.", "You classify sentiment, tersely.")
    ]
    library.label_set(actor=actor, prompt=prompt, name="production", version=versions[0])
    return f"/portal/t/{tenant.slug}/prompts/{prompt.slug}/playground/"


def log_in(page) -> None:
    page.goto("/accounts/login/")
    page.get_by_label(re.compile(r"^\s*Login\s*:?\s*$")).fill(USER["username"])
    page.get_by_label(re.compile(r"^\s*Password\s*:?\s*$")).fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(re.compile(r"/portal/"))


def test_two_versions_run_side_by_side_and_a_missing_variable_is_flagged(
    gateway, db, new_page, shot
):
    url = db(setup_world)
    page = new_page("developer")
    log_in(page)

    # The production version is picked; its schema gave the form a required `text`.
    page.goto(url)
    expect(page.get_by_label("Version", exact=True)).to_have_value("1")
    text = page.get_by_label("text", exact=True)
    expect(page.get_by_text("What to classify")).to_be_visible()
    text.fill(SAID)

    # Compare with v2: the page reloads its form and panes (htmx), keeping what was typed.
    page.get_by_label("Compare with").select_option("2")
    expect(page.get_by_test_id("output-b")).to_be_attached()
    expect(page).to_have_url(re.compile(r"compare=2"))
    expect(page.get_by_label("text", exact=True)).to_have_value(SAID)
    shot(page, "playground-compare")

    # Run both: each pane streams the demo model's answer, then shows its metrics.
    page.get_by_role("button", name="Run").click()
    for pane in ("a", "b"):
        metrics = page.get_by_test_id(f"metrics-{pane}")
        expect(metrics).to_be_visible()
        output = page.get_by_test_id(f"output-{pane}")
        expect(output).to_contain_text("Hello from Waystation's demo model.")
        expect(output).to_contain_text(f"You said: Text: {SAID}")
        for name, shown in (
            ("input_tokens", r"^[1-9]\d*$"),
            ("output_tokens", r"^[1-9]\d*$"),
            ("cost_usd", r"^\$0\.\d*[1-9]\d*$"),
            ("latency_ms", r"^\d+(\.\d+)?$"),
            ("request_id", r"^\S+$"),
        ):
            expect(metrics.locator(f'[data-metric="{name}"]')).to_have_text(re.compile(shown))
        expect(metrics).to_contain_text("Cost (USD)")
    assert (
        page.get_by_test_id("metrics-a").locator('[data-metric="request_id"]').inner_text()
        != page.get_by_test_id("metrics-b").locator('[data-metric="request_id"]').inner_text()
    )
    expect(page.get_by_role("button", name="Run")).to_be_enabled()
    shot(page, "playground-done")

    # The required variable left empty: the error shows at the field, and in the panes.
    page.get_by_label("text", exact=True).fill("")
    page.get_by_role("button", name="Run").click()
    error = page.get_by_test_id("field-error-text")
    expect(error).to_be_visible()
    # both versions said so, so it is said once, with no version in front
    expect(error).to_have_text("'text' is a required property")
    expect(page.get_by_label("text", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("error-a")).to_contain_text("do not match")
    expect(page.get_by_test_id("output-a")).to_have_text("")
    shot(page, "playground-invalid")


TYPED_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 100},
        "tone": {"type": "string", "enum": ["formal", "casual"]},
        "count": {"type": "integer", "minimum": 1},
        "strict": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["text", "tone", "count"],
}
TYPED_TEMPLATE = (
    'Text: {{ text }} | {{ tone | json }} {{ count | json }} {{ strict }} {{ tags | default("-") }}'
)


def setup_typed_prompt() -> str:
    """Devon's prompt `typed` echoes every kind of variable back through the demo model."""
    from django.contrib.auth import get_user_model

    from portal import services
    from portal.models import Tenant
    from prompts import services as library

    setup_world()
    actor = services.Actor(get_user_model().objects.get(username=USER["username"]))
    tenant = Tenant.objects.get(slug="acme")
    prompt = library.prompt_create(actor=actor, tenant=tenant, slug="typed", name="Typed")
    library.version_create(
        actor=actor, prompt=prompt, model="demo-chat", input_schema=TYPED_SCHEMA,
        messages=[{"role": "user", "content": TYPED_TEMPLATE}],
    )  # fmt: skip
    return f"/portal/t/{tenant.slug}/prompts/{prompt.slug}/playground/"


def test_the_form_types_its_values_before_they_are_sent(gateway, db, new_page):
    url = db(setup_typed_prompt)
    page = new_page("developer")
    log_in(page)
    page.goto(url)
    page.get_by_label("text", exact=True).fill("hi")
    page.get_by_label("tone", exact=True).select_option(label="casual")
    page.get_by_label("count", exact=True).fill("3")
    page.get_by_label("strict", exact=True).check()

    # JSON that does not parse is caught in the page: nothing is sent.
    page.get_by_label("tags", exact=True).fill('["a", "b"')
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("field-error-tags")).to_contain_text("Not valid JSON")
    expect(page.get_by_test_id("status-a")).to_have_text("Not run yet.")

    page.get_by_label("tags", exact=True).fill('["a", "b"]')
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("metrics-a")).to_be_visible()
    expect(page.get_by_test_id("field-error-tags")).to_be_hidden()
    expect(page.get_by_test_id("output-a")).to_contain_text(
        'You said: Text: hi | "casual" 3 true ["a","b"]'
    )

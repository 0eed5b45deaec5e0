"""The prompt library end to end, in Chromium: a team writes a sentiment prompt, tries it in
the playground and publishes it; a developer of another tenant subscribes, is approved, and
calls the API with the curl command shown on its docs page (run by the real curl).

Screenshots: test-artifacts/screenshots/NN-name.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_portal_story import create_key, eventually, field, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(300),
]

PASSWORD = "Waystation-prompts-2024!"
LABELS = ["positive", "negative", "neutral"]
MESSAGES = [
    {"role": "system", "content": "Classify the sentiment of the customer's text."},
    {"role": "user", "content": "{{ text }}"},
]
INPUT = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "description": "What to classify"}},
    "required": ["text"],
}
OUTPUT = {
    "type": "object",
    "properties": {"label": {"enum": LABELS}},
    "required": ["label"],
}


def setup_world() -> int:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from gateway import catalog
    from portal import services
    from tests.gateway.helpers import DEMO, apply_yaml

    apply_yaml(DEMO)
    catalog.invalidate()
    for name, tenant in (("alice", "Acme"), ("bob", "Globex")):
        user = get_user_model().objects.create_user(
            username=name, email=f"{name}@example.com", password=PASSWORD
        )
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        made = services.tenant_create(actor=services.Actor(user), name=tenant, slug=tenant.lower())
    app = services.application_create(actor=services.Actor(user), tenant=made, name="Shop")
    return app.pk


def subscription_status(app_id: int) -> str | None:
    from portal.models import Subscription

    sub = Subscription.objects.filter(application_id=app_id).first()
    return sub.status if sub else None


def prompt_usage(tenant_slug: str) -> list[dict]:
    from django.conf import settings

    from billing import usage_stream
    from billing.models import UsageEvent

    if settings.DISTRIBUTED:
        usage_stream.drain(reclaim_idle_ms=0)
    return list(
        UsageEvent.objects.filter(route="prompt", tenant_id__in=_tenant_ids(tenant_slug)).values(
            "request_id", "status", "prompt", "input_tokens", "output_tokens"
        )
    )


def _tenant_ids(slug: str) -> list[int]:
    from portal.models import Tenant

    return list(Tenant.objects.filter(slug=slug).values_list("pk", flat=True))


def test_a_team_publishes_a_prompt_that_another_tenant_calls_with_curl(gateway, db, new_page, shot):
    app_id = db(setup_world)

    # 1. Alice writes the prompt and its first version.
    alice = new_page("alice")
    log_in(alice, "alice", PASSWORD)
    alice.goto("/portal/t/acme/prompts/")
    field(alice, "Slug").fill("sentiment")
    field(alice, "Name").fill("Sentiment")
    alice.get_by_role("button", name="Create prompt").click()
    alice.wait_for_url(re.compile(r"/prompts/sentiment/versions/new/"))
    field(alice, "Messages").fill(json.dumps(MESSAGES, indent=2))
    field(alice, "Model").fill("demo-chat")
    field(alice, "Input schema").fill(json.dumps(INPUT))
    field(alice, "Output format").select_option("json")
    field(alice, "Output schema").fill(json.dumps(OUTPUT))
    field(alice, "Changelog").fill("First cut")
    shot(alice, "prompt-version-form")
    alice.get_by_role("button", name="Save version").click()
    alice.wait_for_url(re.compile(r"/prompts/sentiment/v/1/"))

    # 2. Release it: the production label points at v1.
    alice.goto("/portal/t/acme/prompts/sentiment/")
    field(alice, "Label").fill("production")
    field(alice, "Version").select_option("1")
    alice.get_by_role("button", name="Move label").click()
    expect(alice.get_by_text(re.compile(r"production"))).not_to_have_count(0)

    # 3. Try it in the playground: the answer streams in with tokens, cost and latency.
    alice.goto("/portal/t/acme/prompts/sentiment/playground/")
    alice.locator("[data-var=text]").fill("The delivery was late again and nobody answered.")
    alice.get_by_role("button", name="Run").click()
    metrics = alice.get_by_test_id("metrics-a")
    expect(metrics).to_be_visible()
    output = json.loads(alice.get_by_test_id("output-a").inner_text())
    assert output["label"] in LABELS
    expect(metrics).to_contain_text(re.compile(r"Tokens in\s*[1-9]"))
    shot(alice, "playground")

    # 4. Publish it; the docs page is next.
    alice.goto("/portal/t/acme/prompts/sentiment/publish/")
    field(alice, "Name").fill("Sentiment API")
    shot(alice, "publish-form")
    alice.get_by_role("button", name="Publish API").click()
    alice.wait_for_url(re.compile(r"/portal/apis/acme/sentiment/"))

    # 5. Bob, of another tenant, subscribes his application; it waits for approval.
    bob = new_page("bob")
    log_in(bob, "bob", PASSWORD)
    bob.goto("/portal/apis/acme/sentiment/")
    bob.locator("#subscribe-link").click()
    bob.get_by_role("button", name="Subscribe").click()
    eventually(lambda: db(subscription_status, app_id) == "pending")

    # 6. Alice approves it.
    alice.goto("/portal/approvals/")
    alice.get_by_role("button", name="Approve").click()
    eventually(lambda: db(subscription_status, app_id) == "active")

    # 7. Bob makes a key and runs the docs page's curl example as it stands.
    secret = create_key(bob, app_id, "curl")
    bob.goto("/portal/apis/acme/sentiment/")
    shot(bob, "api-docs")
    command = bob.locator("#example-curl").inner_text()
    assert command.startswith("curl ") and "/api/p/acme/sentiment" in command
    curl = shutil.which("curl")
    assert curl, "curl is needed to run the docs page's example"
    ran = subprocess.run(
        ["bash", "-c", command + " --silent --show-error"],
        env={**os.environ, "WAYSTATION_API_KEY": secret, "NO_PROXY": "*", "no_proxy": "*"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["output"]["label"] in LABELS, answer
    assert answer["usage"]["input_tokens"] > 0 and answer["version"] == 1

    # The call is on record for Bob's tenant, as a prompt call of version 1.
    events = eventually(lambda: db(prompt_usage, "globex"))
    assert [(e["request_id"], e["status"]) for e in events] == [(answer["request_id"], 200)]
    assert events[0]["prompt"]["api"] == "sentiment" and events[0]["prompt"]["version"] == 1

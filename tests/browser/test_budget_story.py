"""Cost control end to end, in Chromium: a tenant admin sets a monthly budget in the portal,
watches it fill as the gateway is used, gets the 80 % email, and downloads the month's cost
report as CSV and PDF. Screenshots: test-artifacts/screenshots/NN-budget-*.png.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.browser.test_portal_story import eventually, field, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(300),
]

PASSWORD = "Waystation-budget-2024!"
PRICEY = """
providers:
  - {name: demo, kind: demo}
models:
  - name: pricey
    price: {input_per_mtok: 20000, output_per_mtok: 20000}   # two cents a token
    deployments: [{provider: demo, model: demo-chat}]
"""


def setup_tenant() -> str:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from portal import services
    from portal.models import Membership, Role
    from tests.gateway.helpers import apply_yaml

    apply_yaml(PRICEY)
    tenant = services.tenant_get_or_create(slug="globex")
    admin = get_user_model().objects.create_user("ada", "ada@globex.test", PASSWORD)
    EmailAddress.objects.create(user=admin, email=admin.email, verified=True, primary=True)
    Membership.objects.create(user=admin, tenant=tenant, role=Role.ADMIN)
    return services.api_key_create(tenant=tenant, name="app key", all_models=True).secret


def store_usage(gateway) -> Decimal:
    from django.conf import settings
    from django.db.models import Sum

    from billing import usage_stream
    from billing.models import UsageEvent
    from gateway import usage

    gateway.call(usage.flush())
    if settings.DISTRIBUTED:
        usage_stream.drain(reclaim_idle_ms=0)
    return UsageEvent.objects.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def mails_to(address: str) -> list[str]:
    from django.core import mail

    return [m.subject for m in mail.outbox if address in m.to]


def test_admin_sets_a_budget_watches_it_fill_and_downloads_the_report(
    gateway, db, new_page, shot, settings
):
    settings.BUDGET_ALERT_INTERVAL_SECONDS = 0  # each stored batch is evaluated at once
    secret = db(setup_tenant)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    page = new_page("budget-admin")
    log_in(page, "ada", PASSWORD)

    # 1. A monthly budget of $1 on the whole tenant, notifying at 50 and 80 %.
    page.goto("/portal/t/globex/budgets/")
    field(page, "Amount (USD)").fill("1")
    field(page, "Notify at (%)").fill("50,80")
    shot(page, "budget-form")
    page.get_by_role("button", name="Save budget").click()
    page.wait_for_load_state()
    assert "$0.0000 of $1.00" in page.locator("#budget-list").inner_text()

    # 2. Calls through the gateway fill it; the page shows what was spent.
    spent = Decimal(0)
    while spent < Decimal("0.85"):
        client.chat.completions.create(
            model="pricey", messages=[{"role": "user", "content": "hello there"}], max_tokens=5
        )
        spent = db(store_usage, gateway)
    page.reload()
    shown = page.locator(".budget-spent").first.inner_text()
    assert Decimal(shown.strip("$")) == spent.quantize(Decimal("0.0001"))
    assert int(page.locator("meter").first.get_attribute("value").split(".")[0]) >= 80
    shot(page, "budget-filling")

    # 3. The 80 % mail reached the admin, once, after the 50 % one.
    subjects = eventually(lambda: db(mails_to, "ada@globex.test"))
    assert [re.search(r"(\d+)%", s).group(1) for s in subjects] == ["50", "80"]

    # 4. This month's report: CSV and PDF downloads whose totals match what was spent.
    month = datetime.now(UTC).strftime("%Y-%m")
    page.goto(f"/portal/t/globex/reports/{month}/")
    shot(page, "budget-report")
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(csv_download.value.path()).read_text()
    total = next(r for r in csv.DictReader(io.StringIO(text)) if r["section"] == "total")
    assert Decimal(total["cost_usd"]) == spent
    with page.expect_download() as pdf_download:
        page.get_by_role("link", name="Download PDF").click()
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")

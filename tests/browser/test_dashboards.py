"""The analytics dashboards in Chromium: a tenant's page and the operator's, over a week of
generated usage events with a cost spike yesterday (flagged as an anomaly). Screenshots:
test-artifacts/screenshots/NN-analytics-tenant.png and NN-analytics-operator.png (copies for
the README are in docs/img/).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_portal_story import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing; `make browser` installs Debian's chromium",
    ),
    pytest.mark.timeout(300),
]

PASSWORD = "Waystation-analytics-2024!"
MODELS = (("gpt-4o-mini", "openai"), ("claude-haiku", "anthropic"), ("gemini-flash", "gemini"))


def _member(username: str, email: str, **extra):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username, email, PASSWORD, **extra)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def _week(tenant, apps, rng: random.Random, now: datetime, *, spike: float) -> None:
    """About a fortnight of calls (this week and the one before), yesterday `spike` x dearer."""
    from billing.models import UsageEvent

    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for days_back in range(14):
        day = midnight - timedelta(days=days_back)
        span = (now - day) if days_back == 0 else timedelta(days=1)
        for _ in range(rng.randint(25, 40) if days_back < 7 else rng.randint(15, 25)):
            model, provider = rng.choice(MODELS)
            app, key = rng.choice(apps)
            inp, out = rng.randint(200, 2000), rng.randint(50, 600)
            cost = Decimal(inp * 2 + out * 8) / Decimal(1_000_000)
            if days_back == 1:
                cost *= Decimal(spike)
            rows.append(
                UsageEvent(
                    request_id=f"{tenant.slug}-{len(rows)}-{rng.random()}",
                    created_at=day + span * rng.random(),
                    tenant_id=tenant.pk,
                    application_id=app.pk,
                    api_key_id=key.pk,
                    route="chat",
                    public_model=model,
                    provider=provider,
                    input_tokens=inp,
                    output_tokens=out,
                    cost=cost.quantize(Decimal("0.0000000001")),
                    latency_ms=rng.lognormvariate(6, 0.5),
                    status=rng.choice([200] * 30 + [429, 500]),
                )
            )
    UsageEvent.objects.bulk_create(rows)


def setup_world() -> dict:
    from django.db.models import Count, Sum
    from django.utils import timezone

    from billing.models import UsageEvent
    from observability import analytics, anomalies
    from portal import services
    from portal.models import ApiKey, Application, Membership, Role

    now = timezone.now()
    rng = random.Random(20260312)
    owner = _member("ada", "ada@acme.test")
    _member("olga", "olga@waystation.test", is_staff=True)
    acme = services.tenant_get_or_create(slug="acme", name="Acme Robotics")
    globex = services.tenant_get_or_create(slug="globex", name="Globex")
    Membership.objects.create(user=owner, tenant=acme, role=Role.OWNER)
    for tenant, names, spike in ((acme, ("Support bot", "Search"), 6.0), (globex, ("Billing",), 1)):
        apps = []
        for n, name in enumerate(names):
            app = Application.objects.create(tenant=tenant, name=name)
            key = ApiKey.objects.create(
                tenant=tenant,
                application=app,
                name=f"{name.lower()} prod",
                prefix=f"wsk-{tenant.slug[:2]}{n}",
                secret_hash=f"{tenant.slug}-{n}",
            )
            apps.append((app, key))
        _week(tenant, apps, rng, now, spike=spike)
    anomalies.flag_and_alert()

    week = analytics.period("7d", now)
    in_week = UsageEvent.objects.filter(created_at__gte=week.start, created_at__lt=week.end)
    figures = {
        "acme": in_week.filter(tenant_id=acme.pk).aggregate(cost=Sum("cost"), calls=Count("id")),
        "all": in_week.aggregate(cost=Sum("cost"), calls=Count("id")),
    }
    return {
        name: (f"${value['cost']:,.4f}", f"{value['calls']:,}") for name, value in figures.items()
    }


def test_tenant_and_operator_dashboards_render_the_week(gateway, db, new_page, shot):
    expected = db(setup_world)

    # The tenant owner's page: KPIs, charts, tables, the flagged spike.
    page = new_page("owner")
    log_in(page, "ada", PASSWORD)
    page.goto("/portal/t/acme/analytics/?period=7d")
    expect(page.get_by_role("heading", name="Analytics of Acme Robotics")).to_be_visible()
    cost, calls = expected["acme"]
    expect(page.locator("#kpi-cost .stat-value")).to_have_text(cost)
    expect(page.locator("#kpi-requests .stat-value")).to_have_text(calls)
    for chart in ("requests-chart", "tokens-chart", "cost-chart", "latency-chart", "errors-chart"):
        expect(page.locator(f"svg#{chart}")).to_be_visible()
    expect(page.locator("svg#requests-chart rect")).to_have_count(7)
    expect(page.locator("svg#latency-chart polyline")).to_have_count(2)
    expect(page.locator("#by-model tbody tr")).to_have_count(3)
    expect(page.locator("#by-application")).to_contain_text("Support bot")
    expect(page.locator("#top-applications li")).to_have_count(2)
    expect(page.locator("#anomalies tr.anomaly-recent")).to_have_count(1)
    expect(page.locator("#by-tenant")).to_have_count(0)
    expect(page.get_by_text("Globex")).to_have_count(0)
    shot(page, "analytics-tenant")

    # The operator's page: every tenant, and a table by tenant.
    operator = new_page("operator")
    log_in(operator, "olga", PASSWORD)
    operator.get_by_role("link", name="Analytics (all)").click()
    expect(operator.get_by_role("heading", name="Analytics of all tenants")).to_be_visible()
    cost, calls = expected["all"]
    expect(operator.locator("#kpi-cost .stat-value")).to_have_text(cost)
    expect(operator.locator("#kpi-requests .stat-value")).to_have_text(calls)
    expect(operator.locator("#by-tenant tbody tr")).to_have_count(2)
    expect(operator.locator("#by-tenant")).to_contain_text("Acme Robotics")
    expect(operator.locator("#anomalies")).to_contain_text("Acme Robotics")
    expect(operator.locator("svg#cost-chart rect")).to_have_count(7)
    shot(operator, "analytics-operator")

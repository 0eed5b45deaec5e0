"""The usage page and the budgets and limits page, through the Django test client, on usage
events stored the way the gateway's writer stores them (billing.services.usage_store_batch).

alice owns tenant A (adam admin, bob developer, victor viewer); mallory owns tenant B.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from billing import controls
from billing import selectors as usage
from billing.models import Budget, RateLimit
from billing.services import usage_store_batch
from gateway.models import LanguageModel
from portal import services
from portal.models import AuditEvent, Membership, Role

# usage_store_batch closes stale connections, which a test wrapped in a transaction can't
# survive: these tests commit for real (and the tables are flushed after each).
pytestmark = pytest.mark.django_db(transaction=True)


def _user(name):
    return get_user_model().objects.create_user(name, f"{name}@example.com")


def _as(user):
    return services.Actor(user, "127.0.0.1")


@pytest.fixture
def w():
    alice, adam, bob, victor, mallory = (
        _user(n) for n in ("alice", "adam", "bob", "victor", "mallory")
    )
    a = services.tenant_create(actor=_as(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=_as(mallory), name="Tenant B", slug="tenant-b")
    for person, role in ((adam, Role.ADMIN), (bob, Role.DEVELOPER), (victor, Role.VIEWER)):
        Membership.objects.create(user=person, tenant=a, role=role)
    bot = services.application_create(actor=_as(alice), tenant=a, name="billing-bot")
    web = services.application_create(actor=_as(alice), tenant=a, name="web-shop")
    bot_key = services.api_key_create(actor=_as(alice), tenant=a, application=bot, name="bot-ci")
    web_key = services.api_key_create(actor=_as(alice), tenant=a, application=web, name="web-prod")
    b_app = services.application_create(actor=_as(mallory), tenant=b, name="b-secret-app")
    b_key = services.api_key_create(
        actor=_as(mallory), tenant=b, application=b_app, name="b-secret-key"
    )
    for name in ("demo-chat", "demo-embed"):
        LanguageModel.objects.create(name=name)
    return {
        "alice": alice,
        "adam": adam,
        "bob": bob,
        "victor": victor,
        "mallory": mallory,
        "a": a,
        "b": b,
        "bot": bot,
        "web": web,
        "bot_key": bot_key.api_key,
        "web_key": web_key.api_key,
        "b_app": b_app,
        "b_key": b_key.api_key,
    }


def use(
    tenant,
    key,
    *,
    cost,
    when=None,
    model="demo-chat",
    status=200,
    tokens=(100, 20),
    cache="",
    cache_saved=None,
):
    """One stored usage event, as the gateway's usage writer stores it (`cache_saved` a
    decimal string, as in gateway.usage.UsageRecord.as_row)."""
    usage_store_batch(
        rows=[
            {
                "request_id": uuid.uuid4().hex,
                "created_at": when or timezone.now(),
                "tenant_id": tenant.pk,
                "api_key_id": key.pk if key is not None else None,
                "route": "chat.completions",
                "public_model": model,
                "served_model": model,
                "provider": "demo",
                "upstream_model": model,
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cost": cost,
                "latency_ms": 12.5,
                "status": status,
                "error_type": "" if status < 400 else "upstream_error",
                "cache": cache,
                "cache_saved": cache_saved,
            }
        ]
    )


def login(client, user):
    client.force_login(user)
    return client


def page(client, name, slug, **query):
    response = client.get(reverse(f"portal:{name}", args=[slug]), query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --- the usage page ---------------------------------------------------------------------


def test_the_selectors_add_up_per_day_model_application_and_key(w):
    now = timezone.now()
    use(w["a"], w["bot_key"], cost="0.0100", when=now, tokens=(100, 20))
    use(w["a"], w["bot_key"], cost="0.0200", when=now, status=502, tokens=(50, 0))
    use(w["a"], w["web_key"], cost="0.0005", when=now, model="demo-embed", tokens=(10, 0))
    use(w["a"], w["web_key"], cost="1.0000", when=now - timedelta(days=2))
    use(w["a"], None, cost="0.3000", when=now)  # no key: the operator's own call
    use(w["a"], w["web_key"], cost="9.0000", when=now - timedelta(days=40))  # out of 30 days
    use(w["b"], w["b_key"], cost="5.0000", when=now)  # another tenant

    report = usage.usage_report(tenant=w["a"], days=30, now=now)
    assert report.totals == {
        "cost": Decimal("1.3305"),
        "input_tokens": 360,
        "output_tokens": 60,
        "requests": 5,
        "errors": 1,
        "response_cache_hits": 0,
        "response_cache_saved": Decimal(0),
    }
    assert len(report.per_day) == 30
    assert report.per_day[-1]["day"] == now.date() and report.per_day[-1]["requests"] == 4
    assert report.per_day[-1]["cost"] == Decimal("0.3305")
    assert report.per_day[-3]["cost"] == Decimal("1.0000")
    assert sum(row["requests"] for row in report.per_day) == 5
    assert all(isinstance(row["cost"], Decimal) for row in report.per_day)

    assert [(r["model"], r["cost"], r["requests"]) for r in report.by_model] == [
        ("demo-chat", Decimal("1.3300"), 4),
        ("demo-embed", Decimal("0.0005"), 1),
    ]
    by_app = {r["application_name"]: (r["cost"], r["requests"]) for r in report.by_application}
    assert by_app == {
        "web-shop": (Decimal("1.0005"), 2),
        "": (Decimal("0.3000"), 1),
        "billing-bot": (Decimal("0.0300"), 2),
    }
    assert report.by_application[-1]["application_id"] is None  # the rest comes last
    by_key = {r["key_name"]: (r["cost"], r["errors"]) for r in report.by_key}
    assert by_key == {
        "web-prod": (Decimal("1.0005"), 0),
        "": (Decimal("0.3000"), 0),
        "bot-ci": (Decimal("0.0300"), 1),
    }

    assert usage.usage_report(tenant=w["a"], days=90, now=now).totals["cost"] == Decimal("10.3305")
    assert usage.usage_report(tenant=w["a"], days=7, now=now).totals["requests"] == 5
    assert usage.usage_report(tenant=w["b"], days=7, now=now).totals["cost"] == Decimal("5")


def test_the_usage_page_shows_totals_charts_and_tables_to_a_viewer(client, w):
    use(w["a"], w["bot_key"], cost="0.2500")
    use(w["a"], w["web_key"], cost="0.5000", model="demo-embed")
    use(w["a"], w["web_key"], cost="0.1000", when=timezone.now() - timedelta(days=1))
    use(w["b"], w["b_key"], cost="7.0000")

    html = page(login(client, w["victor"]), "usage", w["a"].slug)
    assert re.search(r'id="total-cost">\$0\.8500<', html)
    assert re.search(r'id="total-requests">3<', html)
    # Two charts, each an accessible image with a title, a description and a bar per busy day.
    for chart in ("cost-chart", "requests-chart"):
        assert f'<svg id="{chart}" role="img" aria-labelledby="{chart}-title {chart}-desc"' in html
        assert f'<title id="{chart}-title">' in html
    today = timezone.now().strftime("%Y-%m-%d")
    assert f"<title>{today}: $0.7500</title>" in html
    assert f"<title>{today}: 2 requests</title>" in html
    assert html.count("<rect ") == 4  # two busy days, two charts
    # The table fallback has every day of the window.
    table = html.split('id="per-day-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 31  # the header row and 30 days
    for name in ("demo-chat", "demo-embed", "billing-bot", "web-shop", "bot-ci", "web-prod"):
        assert name in html, name
    assert "b-secret" not in html and "7.0000" not in html

    week = page(client, "usage", w["a"].slug, days="7")
    assert week.split('id="per-day-table"')[1].split("</table>")[0].count("<tr>") == 8
    assert 'href="?days=7" aria-current="page"' in week
    fallback = page(client, "usage", w["a"].slug, days="5")  # not offered: the default
    assert 'href="?days=30" aria-current="page"' in fallback


def _hits(w, now):
    """Two hits of the bot key (one semantic), and events that saved nothing: a miss (with a
    stray cache_saved, which must not count), a bypass, one without the cache; and B's hit."""
    use(w["a"], w["bot_key"], cost="0", when=now, tokens=(0, 0), cache="hit", cache_saved="0.5")
    use(
        w["a"],
        w["bot_key"],
        cost="0.0001",  # a per-hit price
        when=now - timedelta(days=1),
        tokens=(0, 0),
        cache="semantic-hit",
        cache_saved="0.2500000001",
    )
    use(
        w["a"],
        w["web_key"],
        cost="0.0300",
        when=now,
        model="demo-embed",
        cache="hit",
        cache_saved="1.25",
        tokens=(0, 0),
    )
    use(w["a"], w["web_key"], cost="0.0200", when=now, cache="miss", cache_saved="9")
    use(w["a"], w["web_key"], cost="0.0100", when=now, cache="bypass")
    use(w["a"], None, cost="0.0400", when=now)
    use(w["b"], w["b_key"], cost="0", when=now, tokens=(0, 0), cache="hit", cache_saved="7")


def test_the_selectors_count_response_cache_hits_and_what_they_saved(w):
    now = timezone.now()
    _hits(w, now)
    report = usage.usage_report(tenant=w["a"], days=7, now=now)
    assert report.totals["response_cache_hits"] == 3
    assert report.totals["response_cache_saved"] == Decimal("2.0000000001")
    assert report.totals["cost"] == Decimal("0.1001")  # what the hits cost is in the cost
    assert report.totals["requests"] == 6
    assert [(r["response_cache_hits"], r["response_cache_saved"]) for r in report.per_day[-2:]] == [
        (1, Decimal("0.2500000001")),
        (2, Decimal("1.75")),
    ]
    assert {r["model"]: r["response_cache_hits"] for r in report.by_model} == {
        "demo-chat": 2,
        "demo-embed": 1,
    }
    by_key = {
        r["key_name"]: (r["response_cache_hits"], r["response_cache_saved"]) for r in report.by_key
    }
    assert by_key == {
        "bot-ci": (2, Decimal("0.7500000001")),
        "web-prod": (1, Decimal("1.25")),
        "": (0, Decimal(0)),
    }
    by_app = {r["application_name"]: r["response_cache_saved"] for r in report.by_application}
    assert by_app == {"billing-bot": Decimal("0.7500000001"), "web-shop": Decimal("1.25"), "": 0}
    b = usage.usage_report(tenant=w["b"], days=7, now=now).totals
    assert (b["response_cache_hits"], b["response_cache_saved"]) == (1, Decimal(7))


def test_the_usage_page_and_api_show_the_response_cache(client, w):
    from rest_framework.test import APIClient

    now = timezone.now()
    _hits(w, now)
    html = page(login(client, w["victor"]), "usage", w["a"].slug)
    assert re.search(r'id="response-cache-saved">\$2\.0000<', html)
    assert re.search(r'id="response-cache-hits">3 answers from the cache<', html)
    assert "Saved by the response cache" in html
    for table in ("per-day-table", "by-model", "by-application", "by-key"):
        head = html.split(f'id="{table}"')[1].split("</thead>")[0]
        assert "Response cache hits" in head and "Saved by the response cache (USD)" in head
    row = html.split('id="by-key"')[1].split("bot-ci")[1].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[-3:] == ["2", "0.7500", "0.0001"]  # hits, saved, cost

    api = APIClient()
    api.force_authenticate(w["victor"])
    body = api.get(reverse("api:usage", args=[w["a"].slug]), {"days": 7}).json()
    assert body["totals"]["response_cache_hits"] == 3
    assert Decimal(body["totals"]["response_cache_saved"]) == Decimal("2.0000000001")
    assert body["per_day"][-1]["response_cache_hits"] == 2
    assert {k["key_name"]: k["response_cache_hits"] for k in body["by_key"]} == {
        "bot-ci": 2,
        "web-prod": 1,
        "": 0,
    }


def test_usage_pages_are_for_members_only(client, w):
    c = login(client, w["mallory"])
    assert c.get(reverse("portal:usage", args=[w["a"].slug])).status_code == 404
    assert c.get(reverse("portal:budgets", args=[w["a"].slug])).status_code == 404
    client.logout()
    response = client.get(reverse("portal:usage", args=[w["a"].slug]))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_nav_links_usage_and_budgets(client, w):
    html = page(login(client, w["bob"]), "usage", w["a"].slug)
    assert f'href="/portal/t/{w["a"].slug}/usage/" aria-current="page">Usage</a>' in html
    assert f'href="/portal/t/{w["a"].slug}/budgets/">Budgets</a>' in html


# --- budgets ------------------------------------------------------------------------------


def _spent_cell(html, budget):
    row = html.split(f'id="budget-{budget.pk}"')[1].split("</tr>")[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))


def test_an_admin_sets_a_monthly_budget_and_watches_it_fill(client, w):
    c = login(client, w["adam"])
    before = page(c, "budgets", w["a"].slug)
    assert "No budgets yet" in before and 'id="budget-form"' in before
    # Spending from before this month and of another tenant does not count.
    last_month = controls.period_start(Budget.Period.MONTHLY) - timedelta(seconds=1)
    use(w["a"], w["bot_key"], cost="3.0000", when=last_month)
    use(w["b"], w["b_key"], cost="3.0000")

    response = c.post(
        reverse("portal:budget_save", args=[w["a"].slug]),
        {
            "budget-target": "tenant",
            "budget-period": "monthly",
            "budget-amount_usd": "2.00",
            "budget-thresholds": "50, 80,100",
            "budget-hard": "on",
        },
    )
    assert response.status_code == 302
    budget = Budget.objects.get(tenant=w["a"])
    assert (budget.period, budget.amount_usd, budget.thresholds, budget.hard) == (
        "monthly",
        Decimal("2.0000"),
        [50, 80, 100],
        True,
    )
    assert budget.application_id is None and budget.api_key_id is None
    assert AuditEvent.objects.filter(
        tenant=w["a"], action="budget.created", actor=w["adam"]
    ).exists()

    html = page(c, "budgets", w["a"].slug)
    assert "$0.0000 of $2.00" in _spent_cell(html, budget)
    assert "0.0 %" in _spent_cell(html, budget)
    start = controls.period_start(Budget.Period.MONTHLY)
    assert f'datetime="{start.isoformat()}"' in html  # the current period is shown

    use(w["a"], w["bot_key"], cost="0.5000")
    use(w["a"], w["web_key"], cost="0.2500")
    cell = _spent_cell(page(c, "budgets", w["a"].slug), budget)
    assert "$0.7500 of $2.00" in cell and "37.5 %" in cell

    use(w["a"], None, cost="1.0000")
    html = page(c, "budgets", w["a"].slug)
    assert "87.5 %" in _spent_cell(html, budget)
    assert re.search(rf'<meter id="budget-meter-{budget.pk}"[^>]* value="87.5"', html)

    use(w["a"], w["bot_key"], cost="0.2500")
    cell = _spent_cell(page(c, "budgets", w["a"].slug), budget)
    assert "$2.0000 of $2.00" in cell and "100.0 % · spent" in cell


def test_a_budget_on_an_application_counts_only_its_keys(client, w):
    c = login(client, w["alice"])
    response = c.post(
        reverse("portal:budget_save", args=[w["a"].slug]),
        {
            "budget-target": f"app:{w['web'].pk}",
            "budget-period": "daily",
            "budget-amount_usd": "1",
            "budget-thresholds": "",
        },
    )
    assert response.status_code == 302
    budget = Budget.objects.get(tenant=w["a"])
    assert (budget.application, budget.period, budget.hard, budget.thresholds) == (
        w["web"],
        "daily",
        False,
        [],
    )
    use(w["a"], w["web_key"], cost="0.4000")
    use(w["a"], w["bot_key"], cost="0.9000")
    cell = _spent_cell(page(c, "budgets", w["a"].slug), budget)
    assert "Application web-shop" in cell and "$0.4000 of $1.00" in cell and "40.0 %" in cell


def test_changing_a_budget_updates_it_in_place_and_keeps_its_notices(client, w):
    budget = controls.budget_set(
        actor=_as(w["alice"]),
        tenant=w["a"],
        amount_usd=Decimal("10"),
        notify_emails=["finance@example.com"],
        webhook_url="https://hooks.example.com/budget",
    )
    c = login(client, w["adam"])
    form = page(c, "budgets", w["a"].slug, budget=str(budget.pk))
    assert 'name="budget-amount_usd" value="10"' in form  # the change form is filled in
    response = c.post(
        reverse("portal:budget_save", args=[w["a"].slug]),
        {
            "budget-target": "tenant",
            "budget-period": "monthly",
            "budget-amount_usd": "25.5",
            "budget-thresholds": "90",
        },
    )
    assert response.status_code == 302
    assert Budget.objects.count() == 1
    budget.refresh_from_db()
    assert (budget.amount_usd, budget.thresholds, budget.hard) == (Decimal("25.5"), [90], False)
    assert budget.notify_emails == ["finance@example.com"]
    assert budget.webhook_url == "https://hooks.example.com/budget"
    assert AuditEvent.objects.filter(action="budget.changed", actor=w["adam"]).exists()


def test_budget_form_errors_are_shown_inline_and_change_nothing(client, w):
    c = login(client, w["adam"])
    url = reverse("portal:budget_save", args=[w["a"].slug])
    cases = [
        ({"budget-amount_usd": "-5"}, "The budget must be a positive amount of dollars."),
        ({"budget-amount_usd": "abc"}, "Enter a number."),
        ({"budget-thresholds": "50,abc"}, "Write whole percentages separated by commas"),
        ({"budget-thresholds": "0,150"}, "Thresholds are percentages from 1 to 100."),
        ({"budget-target": f"app:{w['b_app'].pk}"}, "Select a valid choice."),
        ({"budget-target": f"key:{w['b_key'].pk}"}, "Select a valid choice."),
        ({"budget-period": "weekly"}, "Select a valid choice."),
    ]
    for change, message in cases:
        data = {
            "budget-target": "tenant",
            "budget-period": "monthly",
            "budget-amount_usd": "10",
            "budget-thresholds": "50,80,100",
            **change,
        }
        response = c.post(url, data)
        html = response.content.decode()
        assert response.status_code == 200, change
        assert message in html, change
        assert 'class="field has-error"' in html, change
    assert not Budget.objects.exists()


def test_a_viewer_and_a_developer_see_budgets_read_only_and_cannot_change_them(client, w):
    budget = controls.budget_set(actor=_as(w["alice"]), tenant=w["a"], amount_usd=Decimal("5"))
    limit = controls.rate_limit_set(actor=_as(w["alice"]), tenant=w["a"], requests_per_minute=10)
    slug = w["a"].slug
    for person in ("victor", "bob"):
        c = login(client, w[person])
        html = page(c, "budgets", slug)
        assert f'id="budget-{budget.pk}"' in html and f'id="limit-{limit.pk}"' in html
        assert "Only owners and admins set budgets" in html
        assert 'id="budget-form"' not in html and "Remove" not in html
        posts = [
            (
                reverse("portal:budget_save", args=[slug]),
                {
                    "budget-target": "tenant",
                    "budget-period": "monthly",
                    "budget-amount_usd": "500",
                },
            ),
            (reverse("portal:budget_remove", args=[slug, budget.pk]), {}),
            (
                reverse("portal:rate_limit_save", args=[slug]),
                {"limit-target": "tenant", "limit-requests_per_minute": "99999"},
            ),
            (reverse("portal:rate_limit_remove", args=[slug, limit.pk]), {}),
        ]
        for url, data in posts:
            assert c.post(url, data).status_code == 403, (person, url)
    budget.refresh_from_db()
    limit.refresh_from_db()
    assert budget.amount_usd == Decimal("5") and limit.requests_per_minute == 10
    assert Budget.objects.count() == 1 and RateLimit.objects.count() == 1


def test_another_tenants_owner_cannot_reach_the_budgets(client, w):
    budget = controls.budget_set(actor=_as(w["alice"]), tenant=w["a"], amount_usd=Decimal("5"))
    c = login(client, w["mallory"])
    # Through A's slug: not a member. Through B's slug: not B's budget.
    for slug in (w["a"].slug, w["b"].slug):
        url = reverse("portal:budget_remove", args=[slug, budget.pk])
        assert c.post(url).status_code == 404
    assert Budget.objects.filter(pk=budget.pk).exists()


# --- rate limits ------------------------------------------------------------------------


def test_rate_limits_are_created_changed_and_removed_in_the_page(client, w):
    c = login(client, w["adam"])
    slug = w["a"].slug
    save = reverse("portal:rate_limit_save", args=[slug])
    key = w["bot_key"]
    response = c.post(
        save,
        {
            "limit-target": f"key:{key.pk}",
            "limit-model": "demo-chat",
            "limit-requests_per_minute": "60",
        },
    )
    assert response.status_code == 302
    limit = RateLimit.objects.get()
    assert (limit.api_key, limit.model, limit.requests_per_minute, limit.tokens_per_minute) == (
        key,
        "demo-chat",
        60,
        None,
    )
    html = page(c, "budgets", slug)
    row = html.split(f'id="limit-{limit.pk}"')[1].split("</tr>")[0]
    assert "bot-ci" in row and "demo-chat" in row and ">60<" in row

    # The change form is filled in; saving the same target and model changes the row.
    form = page(c, "budgets", slug, limit=str(limit.pk))
    assert 'name="limit-requests_per_minute" value="60"' in form
    response = c.post(
        save,
        {
            "limit-target": f"key:{key.pk}",
            "limit-model": "demo-chat",
            "limit-requests_per_minute": "30",
            "limit-tokens_per_minute": "5000",
            "limit-concurrent": "2",
        },
    )
    assert response.status_code == 302
    limit.refresh_from_db()
    assert (limit.requests_per_minute, limit.tokens_per_minute, limit.concurrent) == (30, 5000, 2)
    assert RateLimit.objects.count() == 1

    # A tenant-wide limit on every model is another row.
    c.post(save, {"limit-target": "tenant", "limit-model": "", "limit-concurrent": "20"})
    assert RateLimit.objects.filter(api_key=None, application=None, model="").get().concurrent == 20

    # Errors, inline; nothing changes.
    for data, message in (
        ({"limit-target": "tenant"}, "Set at least one limit"),
        ({"limit-target": "tenant", "limit-requests_per_minute": "0"}, "greater than or equal"),
        ({"limit-target": "tenant", "limit-model": "gpt-9", "limit-concurrent": "1"}, "valid"),
        ({"limit-target": f"app:{w['b_app'].pk}", "limit-concurrent": "1"}, "valid choice"),
    ):
        response = c.post(save, data)
        assert response.status_code == 200 and message in response.content.decode(), data
    assert RateLimit.objects.count() == 2

    response = c.post(reverse("portal:rate_limit_remove", args=[slug, limit.pk]))
    assert response.status_code == 302
    assert not RateLimit.objects.filter(pk=limit.pk).exists()
    actions = set(AuditEvent.objects.filter(actor=w["adam"]).values_list("action", flat=True))
    assert {"rate_limit.created", "rate_limit.changed", "rate_limit.deleted"} <= actions


def test_budget_removal_is_audited(client, w):
    budget = controls.budget_set(actor=_as(w["alice"]), tenant=w["a"], amount_usd=Decimal("5"))
    c = login(client, w["adam"])
    response = c.post(reverse("portal:budget_remove", args=[w["a"].slug, budget.pk]))
    assert response.status_code == 302
    assert not Budget.objects.exists()
    assert AuditEvent.objects.filter(action="budget.deleted", actor=w["adam"]).exists()
    assert "No budgets yet" in page(c, "budgets", w["a"].slug)

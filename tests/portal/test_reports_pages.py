"""Cost reports in the portal and the API: pages, downloads, tenant isolation, formats."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from billing import reports, rollups
from billing.models import ReportWebhook
from portal import services
from portal.models import AuditEvent, Membership, Role
from tests.billing.test_reports import add_event, raw_cost

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com")


@pytest.fixture
def world(client):
    alice, mallory, victor = _user("alice"), _user("mallory"), _user("victor")
    a = services.tenant_create(actor=services.Actor(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=services.Actor(mallory), name="Tenant B", slug="tenant-b")
    Membership.objects.create(user=victor, tenant=a, role=Role.VIEWER)
    app = services.application_create(actor=services.Actor(alice), tenant=a, name="billing-bot")
    key = services.api_key_create(
        actor=services.Actor(alice), tenant=a, application=app, name="ci"
    ).api_key
    for day, cost in ((1, "1.0000000004"), (9, "2.1234567891"), (30, "0.0000000005")):
        add_event(at=OCT + timedelta(days=day), tenant=a, key=key, cost=cost, model="chat")
    add_event(at=OCT - timedelta(days=3), tenant=a, key=key, cost="2")
    add_event(at=OCT + timedelta(days=2), tenant=b, cost="99")
    token = services.personal_token_create(actor=services.Actor(alice), name="s").secret
    return {"alice": alice, "mallory": mallory, "victor": victor, "a": a, "b": b, "token": token}


def page(name, **kwargs):
    return reverse(f"portal:{name}", kwargs=kwargs)


def test_the_reports_page_lists_months_and_picks_one(client, world):
    client.force_login(world["victor"])
    response = client.get(page("reports", slug="tenant-a"))
    assert response.status_code == 200
    html = response.content.decode()
    now = timezone.now()
    this_month = f"{now.year:04d}-{now.month:02d}"
    assert page("report", slug="tenant-a", month=this_month) in html
    assert page("report", slug="tenant-a", month="2026-10") in html or now.year > 2027
    assert ">Reports</a>" in html  # the nav
    assert 'name="url"' not in html  # a viewer doesn't set the webhook

    picked = client.get(page("reports", slug="tenant-a"), {"month": "2026-10"})
    assert picked.status_code == 302 and picked["Location"] == page(
        "report", slug="tenant-a", month="2026-10"
    )
    bad = client.get(page("reports", slug="tenant-a"), {"month": "October"}, follow=True)
    assert bad.status_code == 200 and "YYYY-MM" in bad.content.decode()


def test_a_months_report_page_shows_the_totals_and_download_links(client, world):
    client.force_login(world["victor"])
    response = client.get(page("report", slug="tenant-a", month="2026-10"))
    assert response.status_code == 200
    html = response.content.decode()
    total = raw_cost(world["a"], OCT, NOV)
    assert reports.usd(total) == "$3.12"
    assert '<span class="stat-value" id="total-cost">$3.12</span>' in html
    assert "billing-bot" in html and "chat" in html
    assert "+$1.12" in html  # against September's $2
    csv_url = page("report_download", slug="tenant-a", month="2026-10", fmt="csv")
    pdf_url = page("report_download", slug="tenant-a", month="2026-10", fmt="pdf")
    assert f'href="{csv_url}"' in html and "Download CSV" in html
    assert f'href="{pdf_url}"' in html and "Download PDF" in html


def add_hits(world) -> None:
    """October: two response-cache hits of A (one semantic, one with a per-hit price) and
    events that saved nothing (a miss with a stray cache_saved, a bypass); B has a hit too."""
    a = world["a"]
    none = {"input_tokens": 0, "output_tokens": 0}
    add_event(
        at=OCT + timedelta(days=3), tenant=a, cost="0", cache="hit", cache_saved="0.75", **none
    )
    add_event(
        at=OCT + timedelta(days=4),
        tenant=a,
        model="coder",
        cost="0.0001",
        cache="semantic-hit",
        cache_saved="0.5000000001",
        **none,
    )
    add_event(at=OCT + timedelta(days=4), tenant=a, cost="0.01", cache="miss", cache_saved="8")
    add_event(at=OCT + timedelta(days=4), tenant=a, cost="0.01", cache="bypass")
    add_event(
        at=OCT + timedelta(days=4), tenant=world["b"], cost="0", cache="hit", cache_saved="40"
    )


def test_a_months_report_page_shows_the_response_cache_apart_from_prompt_caching(client, world):
    add_hits(world)
    rollups.rollup(rollups.DAY, OCT, OCT + timedelta(days=4))  # the first hit rolled up
    client.force_login(world["victor"])
    html = client.get(page("report", slug="tenant-a", month="2026-10")).content.decode()
    assert '<span class="stat-value" id="response-cache-savings">$1.25</span>' in html
    assert '<span class="stat-label">Saved by the response cache</span>' in html
    assert 'id="response-cache-hits">2 answers from the cache<' in html
    assert '<span class="stat-value" id="cache-savings">$0.00</span>' in html  # prompt caching
    model = html.split('id="by-model"')[1].split("</table>")[0]
    assert "Saved by prompt caching" in model and "Saved by the response cache" in model
    coder = re.findall(r"<td>([^<]*)</td>", model.split(">coder<")[1].split("</tr>")[0])
    assert coder[-3:] == ["1", "$0.50", "$0.00"]  # hits, saved by the response cache, cost


def test_the_api_and_csv_carry_the_response_cache_figures(world):
    add_hits(world)
    rollups.rollup(rollups.DAY, OCT, OCT + timedelta(days=4))
    client = with_token(world)
    data = client.get(api(slug="tenant-a", month="2026-10")).json()
    assert data["total"]["response_cache_hits"] == 2
    assert data["total"]["response_cache_saved_usd"] == "1.2500000001"
    assert data["total"]["cache_savings_usd"] == "0.000000000000"  # unchanged, prompt caching
    by_model = {
        row["name"]: (row["response_cache_hits"], row["response_cache_saved_usd"])
        for row in data["by_model"]
    }
    assert by_model == {"chat": (1, "0.7500000000"), "coder": (1, "0.5000000001")}
    for section in ("by_application", "by_key"):
        assert sum(row["response_cache_hits"] for row in data[section]) == 2

    got = client.get(api(slug="tenant-a", month="2026-10"), {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(got.content.decode())))
    (total,) = [row for row in rows if row["section"] == "total"]
    assert (total["response_cache_hits"], total["response_cache_saved_usd"]) == (
        "2",
        "1.2500000001",
    )
    spec = APIClient().get("/api/schema/", {"format": "json"}).json()
    line = spec["components"]["schemas"]["CostReportLineOutput"]
    assert {"cache_savings_usd", "response_cache_hits", "response_cache_saved_usd"} <= set(
        line["required"]
    )


def test_downloads(client, world):
    client.force_login(world["alice"])
    got = client.get(page("report_download", slug="tenant-a", month="2026-10", fmt="csv"))
    assert got.status_code == 200 and got["Content-Type"].startswith("text/csv")
    assert 'filename="waystation-cost-tenant-a-2026-10.csv"' in got["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(got.content.decode())))
    (total,) = [row for row in rows if row["section"] == "total"]
    assert Decimal(total["cost_usd"]) == raw_cost(world["a"], OCT, NOV)
    pdf = client.get(page("report_download", slug="tenant-a", month="2026-10", fmt="pdf"))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert (
        client.get(page("report_download", slug="tenant-a", month="2026-10", fmt="xls")).status_code
        == 404
    )


def test_another_tenants_reports_are_404(client, world):
    client.force_login(world["mallory"])
    for url in (
        page("reports", slug="tenant-a"),
        page("report", slug="tenant-a", month="2026-10"),
        page("report_download", slug="tenant-a", month="2026-10", fmt="csv"),
        page("report_download", slug="tenant-a", month="2026-10", fmt="pdf"),
    ):
        assert client.get(url).status_code == 404, url
    assert (
        client.post(
            page("report_webhook_save", slug="tenant-a"), {"url": "https://x.example/h"}
        ).status_code
        == 404
    )
    assert not ReportWebhook.objects.exists()
    # her own tenant's report holds her own events only
    own = client.get(page("report", slug="tenant-b", month="2026-10"))
    assert own.status_code == 200 and "$99.00" in own.content.decode()


def test_malformed_and_future_months_are_404_in_the_portal(client, world):
    client.force_login(world["alice"])
    future = timezone.now() + timedelta(days=40)
    for month in ("2026-13", "202610", "x", f"{future.year:04d}-{future.month:02d}"):
        assert client.get(f"/portal/t/tenant-a/reports/{month}/").status_code == 404, month


def test_owners_set_the_chargeback_webhook_and_see_the_secret_once(client, world):
    client.force_login(world["alice"])
    url = page("report_webhook_save", slug="tenant-a")
    response = client.post(url, {"url": "https://chargeback.example/hooks", "enabled": "on"})
    assert response.status_code == 200
    html = response.content.decode()
    webhook = ReportWebhook.objects.get(tenant=world["a"])
    assert webhook.url == "https://chargeback.example/hooks" and webhook.enabled
    assert "wswhsec_" in html and "no-store" in response["Cache-Control"]
    assert AuditEvent.objects.filter(action="report_webhook.created").count() == 1
    again = client.get(page("reports", slug="tenant-a")).content.decode()
    assert "wswhsec_" not in again and "https://chargeback.example/hooks" in again
    assert client.post(url, {"url": "not a url"}).status_code == 200
    assert ReportWebhook.objects.get().url == "https://chargeback.example/hooks"

    client.force_login(world["victor"])
    assert client.post(url, {"url": "https://evil.example/"}).status_code == 403
    assert ReportWebhook.objects.get().url == "https://chargeback.example/hooks"


# --- the API -------------------------------------------------------------------------------


def api(name="cost-report", **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def with_token(world) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    return client


def test_the_api_answers_the_report_as_json_exact_to_the_raw_events(world):
    rollups.rollup(rollups.DAY, OCT, OCT + timedelta(days=5))  # some days rolled up
    add_event(at=OCT + timedelta(days=1), tenant=world["a"], cost="0.0000000001")  # late
    response = with_token(world).get(api(slug="tenant-a", month="2026-10"))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert Decimal(data["total"]["cost_usd"]) == raw_cost(world["a"], OCT, NOV)
    assert data["total"]["requests"] == 4
    assert data["month"] == "2026-10" and data["currency"] == "USD"
    assert data["trend"] == {
        "previous_month": "2026-09",
        "previous_cost_usd": "2.0000000000",
        "change_usd": f"{(raw_cost(world['a'], OCT, NOV) - 2).quantize(Decimal('1e-10')):f}",
        "change_pct": "56.17",
    }
    assert [row["name"] for row in data["by_application"]] == ["billing-bot", "(no application)"]
    assert sum(Decimal(row["cost_usd"]) for row in data["by_key"]) == Decimal(
        data["total"]["cost_usd"]
    )


def test_the_api_answers_csv_and_pdf(world):
    client = with_token(world)
    got = client.get(api(slug="tenant-a", month="2026-10"), {"format": "csv"})
    assert got.status_code == 200 and got["Content-Type"].startswith("text/csv")
    assert "attachment" in got["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(got.content.decode())))
    assert Decimal(rows[0]["cost_usd"]) == raw_cost(world["a"], OCT, NOV)
    pdf = client.get(api(slug="tenant-a", month="2026-10"), {"format": "pdf"})
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    accept = client.get(api(slug="tenant-a", month="2026-10"), HTTP_ACCEPT="text/csv")
    assert accept.status_code == 200 and accept.content.startswith(b"tenant,month,section")


def test_the_api_refuses_bad_months_strangers_and_anonymous_callers(world):
    client = with_token(world)
    for month, fmt in (("2026-13", None), ("oct", None), ("2026-1", "csv"), ("1999-01", "pdf")):
        params = {"format": fmt} if fmt else {}
        response = client.get(api(slug="tenant-a", month=month), params)
        assert response.status_code == 400, month
        assert response["Content-Type"] == "application/json"
        assert "month" in response.json()
    future = timezone.now() + timedelta(days=40)
    later = f"{future.year:04d}-{future.month:02d}"
    assert client.get(api(slug="tenant-a", month=later)).status_code == 400

    mallory = APIClient()
    mallory.force_authenticate(world["mallory"])
    for fmt in (None, "csv", "pdf"):
        params = {"format": fmt} if fmt else {}
        response = mallory.get(api(slug="tenant-a", month="2026-10"), params)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert mallory.get(api(slug="tenant-b", month="2026-10")).json()["total"]["cost_usd"] == (
        "99.0000000000"
    )

    anonymous = APIClient().get(api(slug="tenant-a", month="2026-10"), {"format": "pdf"})
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/json"


def test_a_viewer_may_read_reports_through_the_api(world):
    viewer = APIClient()
    viewer.force_authenticate(world["victor"])
    assert viewer.get(api(slug="tenant-a", month="2026-10")).status_code == 200


def test_the_schema_documents_the_report(client):
    spec = APIClient().get("/api/schema/", {"format": "json"}).json()
    operation = spec["paths"]["/api/v1/tenants/{slug}/cost-reports/{month}/"]["get"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv", "application/pdf"}
    assert content["application/json"]["schema"]["$ref"].endswith("/CostReportOutput")
    assert set(operation["responses"]["400"]["content"]) == {"application/json"}
    assert {p["name"] for p in operation["parameters"]} >= {"slug", "month", "format"}

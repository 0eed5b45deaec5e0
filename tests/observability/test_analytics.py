"""Analytics queries, pages and cost anomalies, on usage events written with known values."""

from __future__ import annotations

import http.server
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from billing import rollups
from billing.models import UsageEvent
from billing.report_webhooks import report_webhook_set, verify
from observability import analytics, anomalies
from observability.models import CostAnomaly
from portal.models import ApiKey, Application, Membership, Role, Tenant
from portal.services.common import SYSTEM

pytestmark = pytest.mark.django_db

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC


def event(tenant, at, *, cost="0.01", latency=100.0, status=200, **fields) -> UsageEvent:
    values = {
        "request_id": uuid.uuid4().hex,
        "created_at": at,
        "tenant_id": tenant.pk,
        "route": "chat",
        "public_model": "m-small",
        "provider": "p-one",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": Decimal(cost) if cost is not None else None,
        "latency_ms": latency,
        "status": status,
    }
    return UsageEvent.objects.create(**{**values, **fields})


def user(name: str, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.test", "pw", **extra)


@pytest.fixture
def acme():
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    Membership.objects.create(user=user("alice"), tenant=tenant, role=Role.OWNER)
    Membership.objects.create(user=user("bob"), tenant=tenant, role=Role.VIEWER)
    return tenant


@pytest.fixture
def globex():
    tenant = Tenant.objects.create(slug="globex", name="Globex")
    Membership.objects.create(user=user("charlie"), tenant=tenant, role=Role.OWNER)
    return tenant


def events_of(tenant):
    return UsageEvent.objects.filter(tenant_id=tenant.pk)


# --- percentiles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        pytest.param([], 0.5, None, id="empty"),
        pytest.param([7.0], 0.95, 7.0, id="one"),
        pytest.param([400.0, 100.0, 300.0, 200.0], 0.5, 250.0, id="median-interpolated"),
        pytest.param([100.0, 200.0, 300.0, 400.0], 0.95, 385.0, id="p95-interpolated"),
    ],
)
def test_percentile_interpolates_like_percentile_cont(values, fraction, expected):
    assert analytics.percentile(values, fraction) == expected


# --- series ------------------------------------------------------------------------------


def test_series_per_day_counts_sums_percentiles_and_errors(acme, globex):
    for latency in (100, 200, 300, 400):
        event(
            acme, DAY0 + timedelta(hours=3), latency=latency, status=500 if latency == 400 else 200
        )
    event(acme, DAY0 + 2 * timedelta(days=1), cost="0.5", latency=50, input_tokens=1000)
    event(globex, DAY0 + timedelta(hours=3), cost="9", latency=9000)  # another tenant

    rows = analytics.series(events_of(acme), DAY0, DAY0 + timedelta(days=3), "day")

    assert [row["bucket"] for row in rows] == [DAY0 + timedelta(days=n) for n in range(3)]
    assert [row["requests"] for row in rows] == [4, 0, 1]
    first, empty, last = rows
    assert first["cost"] == Decimal("0.04")
    assert (first["input_tokens"], first["output_tokens"], first["tokens"]) == (40, 20, 60)
    assert first["p50"] == pytest.approx(250.0)
    assert first["p95"] == pytest.approx(385.0)
    assert first["error_rate"] == 0.25
    assert (empty["cost"], empty["p50"], empty["error_rate"]) == (Decimal(0), None, None)
    assert (last["cost"], last["input_tokens"], last["p95"]) == (Decimal("0.5"), 1000, 50.0)


def test_series_per_hour_puts_each_event_in_its_hour(acme):
    event(acme, DAY0 + timedelta(minutes=59), latency=10)
    event(acme, DAY0 + timedelta(hours=1), latency=30)
    event(acme, DAY0 + timedelta(hours=1, minutes=30), latency=50)
    event(acme, DAY0 + timedelta(hours=3))  # outside the window

    rows = analytics.series(events_of(acme), DAY0, DAY0 + timedelta(hours=3), "hour")

    assert [row["requests"] for row in rows] == [1, 2, 0]
    assert rows[1]["p50"] == pytest.approx(40.0)


# --- breakdowns and top consumers ----------------------------------------------------------


def test_breakdowns_by_model_provider_application_and_key(acme):
    app = Application.objects.create(tenant=acme, name="Support bot")
    key = ApiKey.objects.create(
        tenant=acme, application=app, name="prod", prefix="wsk-ab", secret_hash="h1"
    )
    event(
        acme,
        DAY0,
        cost="0.30",
        latency=100,
        public_model="m-big",
        provider="p-two",
        application_id=app.pk,
        api_key_id=key.pk,
    )
    event(
        acme,
        DAY0,
        cost="0.10",
        latency=300,
        status=429,
        public_model="m-big",
        provider="p-two",
        application_id=app.pk,
        api_key_id=key.pk,
    )
    event(acme, DAY0, cost="0.05", served_model="m-small", public_model="m-alias")

    by_model = analytics.breakdown(events_of(acme), "model")
    by_provider = analytics.breakdown(events_of(acme), "provider")
    by_app = analytics.breakdown(events_of(acme), "application")
    by_key = analytics.breakdown(events_of(acme), "key")

    assert [(r["label"], r["requests"], r["cost"]) for r in by_model] == [
        ("m-big", 2, Decimal("0.40")),
        ("m-small", 1, Decimal("0.05")),  # the model that answered
    ]
    assert by_model[0]["p50"] == pytest.approx(200.0) and by_model[0]["error_rate"] == 0.5
    assert [r["label"] for r in by_provider] == ["p-two", "p-one"]
    assert [(r["id"], r["label"]) for r in by_app] == [
        (app.pk, "Support bot"),
        (None, "No application"),
    ]
    assert [(r["id"], r["label"]) for r in by_key] == [(key.pk, "prod (wsk-ab…)"), (None, "No key")]
    assert by_key[0]["tokens"] == 30


def test_top_consumers_are_the_costliest_applications_and_keys(acme):
    apps = [Application.objects.create(tenant=acme, name=f"app-{n}") for n in range(3)]
    for n, app in enumerate(apps):
        for _ in range(n + 1):
            event(acme, DAY0, cost="1", application_id=app.pk, api_key_id=100 + n)

    top = analytics.top_consumers(events_of(acme), 2)

    assert [(r["label"], r["cost"]) for r in top["applications"]] == [
        ("app-2", Decimal(3)),
        ("app-1", Decimal(2)),
    ]
    assert [r["id"] for r in top["keys"]] == [102, 101]


# --- periods and the comparison ------------------------------------------------------------


def test_periods_are_whole_buckets_ending_now():
    now = DAY0 + timedelta(days=1, hours=5, minutes=20)

    day = analytics.period("24h", now)
    week = analytics.period("7d", now)

    assert (day.bucket, day.start, day.end) == (
        "hour",
        DAY0 - timedelta(hours=18) + timedelta(days=1),
        DAY0 + timedelta(days=1, hours=6),
    )
    assert len(day.buckets()) == 24
    assert (week.start, week.end) == (DAY0 - timedelta(days=5), DAY0 + timedelta(days=2))
    assert (week.previous.start, week.previous.end) == (DAY0 - timedelta(days=12), week.start)
    assert analytics.period("bogus", now).key == "7d"


def test_compare_against_the_previous_period(acme):
    week = analytics.period("7d", DAY0 + timedelta(days=10))
    for _ in range(3):
        event(acme, week.start + timedelta(hours=1), cost="2", latency=200)
    event(acme, week.previous.start + timedelta(hours=1), cost="4", latency=100, status=500)

    current = analytics.totals(analytics.events_in(events_of(acme), week.start, week.end))
    previous = analytics.totals(
        analytics.events_in(events_of(acme), week.previous.start, week.previous.end)
    )
    changes = analytics.compare(current, previous)

    assert changes["requests"] == {
        "value": 3,
        "previous": 1,
        "delta": 2,
        "pct": 200.0,
        "direction": "up",
    }
    assert changes["cost"]["delta"] == Decimal(2) and changes["cost"]["pct"] == 50.0
    assert changes["p50"]["pct"] == 100.0
    assert changes["error_rate"]["direction"] == "down"
    assert changes["error_rate"]["pct"] == -100.0


def test_compare_with_nothing_before_has_no_percentage():
    changes = analytics.compare(analytics.metrics({"agg_requests": 5}), analytics.metrics())
    assert changes["requests"]["pct"] is None and changes["requests"]["delta"] == 5
    assert changes["p50"]["delta"] is None


# --- daily costs: rollups plus the events they don't hold --------------------------------


def test_daily_costs_read_rollups_and_late_events(acme, globex):
    event(acme, DAY0 + timedelta(hours=1), cost="1.5")
    event(globex, DAY0 + timedelta(hours=1), cost="7")
    rollups.rollup("day", DAY0, DAY0 + timedelta(days=1), now=DAY0 + timedelta(days=1))
    UsageEvent.objects.filter(tenant_id=acme.pk).update(cost=Decimal(100))  # the rollup counts
    event(acme, DAY0 + timedelta(hours=2), cost="0.25")  # stored after the rollup: late
    event(acme, DAY0 + timedelta(days=1), cost="2")  # a day not rolled up

    costs = analytics.daily_costs(DAY0.date(), DAY0.date() + timedelta(days=1))

    assert costs[acme.pk] == {
        DAY0.date(): {"cost": Decimal("1.75"), "requests": 2},
        DAY0.date() + timedelta(days=1): {"cost": Decimal(2), "requests": 1},
    }
    assert costs[globex.pk] == {DAY0.date(): {"cost": Decimal(7), "requests": 1}}


# --- the pages -------------------------------------------------------------------------------


def test_the_tenant_page_shows_only_its_own_events(client, acme, globex):
    now = timezone.now()
    event(acme, now - timedelta(minutes=5), cost="1.25", latency=120, public_model="m-acme")
    event(acme, now - timedelta(days=1), cost="2", latency=80, public_model="m-acme")
    event(globex, now - timedelta(minutes=5), cost="50", public_model="m-globex")
    client.force_login(get_user_model().objects.get(username="bob"))  # a viewer

    response = client.get(reverse("observability:analytics", args=["acme"]) + "?period=7d")

    assert response.status_code == 200
    page = response.content.decode()
    assert response.context["totals"]["cost"] == Decimal("3.25")
    assert response.context["totals"]["requests"] == 2
    assert "$3.2500" in page and 'id="cost-chart"' in page and "<polyline" in page
    assert "m-acme" in page and "m-globex" not in page
    assert 'id="by-tenant"' not in page


@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
def test_each_period_renders(client, acme, period):
    event(acme, timezone.now() - timedelta(minutes=1))
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get(reverse("observability:analytics", args=["acme"]), {"period": period})
    assert response.status_code == 200
    assert len(response.context["series"]) == {"24h": 24, "7d": 7, "30d": 30}[period]


def test_another_tenants_member_gets_a_404(client, acme, globex):
    event(acme, timezone.now(), cost="1")
    client.force_login(get_user_model().objects.get(username="charlie"))
    response = client.get(reverse("observability:analytics", args=["acme"]))
    assert response.status_code == 404


def test_the_operator_page_is_staff_only(client, acme, globex):
    now = timezone.now()
    event(acme, now - timedelta(minutes=5), cost="1")
    event(globex, now - timedelta(minutes=5), cost="3")
    client.force_login(get_user_model().objects.get(username="alice"))  # an owner, not staff
    assert client.get(reverse("observability:operator_analytics")).status_code == 403

    client.force_login(user("olga", is_staff=True))
    response = client.get(reverse("observability:operator_analytics"))

    assert response.status_code == 200
    assert response.context["totals"]["cost"] == Decimal(4)
    [by_tenant] = [t for t in response.context["tables"] if t["by"] == "tenant"]
    assert [(r["label"], r["cost"]) for r in by_tenant["rows"]] == [
        ("Globex", Decimal(3)),
        ("Acme", Decimal(1)),
    ]


def test_the_page_highlights_recent_anomalies(client, acme):
    today = timezone.now().astimezone(UTC).date()
    CostAnomaly.objects.create(tenant=acme, day=today, cost=9, baseline=1, factor=3.0)
    CostAnomaly.objects.create(
        tenant=acme, day=today - timedelta(days=40), cost=9, baseline=1, factor=3
    )
    client.force_login(get_user_model().objects.get(username="alice"))
    page = client.get(reverse("observability:analytics", args=["acme"])).content.decode()
    assert page.count('class="anomaly-recent"') == 1


# --- cost anomalies --------------------------------------------------------------------------

TODAY = date(2026, 3, 12)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def history(tenant, days: int, cost: str = "1") -> None:
    """One call a day costing `cost`, on the `days` days before yesterday."""
    for n in range(2, days + 2):
        event(tenant, at(TODAY - timedelta(days=n)), cost=cost)


@pytest.fixture
def receiver():
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((body, self.headers["x-waystation-signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_a_spike_is_flagged_and_alerted_once(acme, globex, mailoutbox, receiver):
    url, received = receiver
    _, secret = report_webhook_set(actor=SYSTEM, tenant=acme, url=url)
    history(acme, 7)  # $1 a day
    event(acme, at(TODAY - timedelta(days=1)), cost="3.5")  # yesterday: 3.5x
    history(globex, 7)
    event(globex, at(TODAY - timedelta(days=1)), cost="2")  # 2x: under the factor

    assert anomalies.flag_and_alert(today=TODAY) == 1

    [anomaly] = CostAnomaly.objects.all()
    assert (anomaly.tenant, anomaly.day) == (acme, TODAY - timedelta(days=1))
    assert (anomaly.cost, anomaly.baseline, anomaly.factor) == (Decimal("3.5"), Decimal(1), 3.0)
    assert anomaly.notified_at is not None
    [mail] = mailoutbox
    assert mail.to == ["alice@example.test"]  # owners and admins, not viewers
    assert "$3.50" in mail.body and "$1.00" in mail.body
    [(body, header)] = received
    assert verify(secret, body, header)
    assert b'"event":"cost.anomaly"' in body and b'"day":"2026-03-11"' in body

    event(acme, at(TODAY - timedelta(days=1), 13), cost="1")  # a bigger spike, same day
    assert anomalies.flag_and_alert(today=TODAY) == 0

    assert len(mailoutbox) == 1 and len(received) == 1
    assert CostAnomaly.objects.get().cost == Decimal("4.5")  # updated, not alerted again


def test_today_so_far_is_checked_against_the_week_before_it(acme, mailoutbox):
    history(acme, 6)
    event(acme, at(TODAY - timedelta(days=1)), cost="1")
    event(acme, at(TODAY, 1), cost="4")

    assert anomalies.flag_and_alert(today=TODAY) == 1
    assert CostAnomaly.objects.get().day == TODAY


@pytest.mark.parametrize(
    ("days", "spike", "factor"),
    [
        pytest.param(7, "3", None, id="at-the-factor"),
        pytest.param(2, "50", None, id="two-days-of-history"),
        pytest.param(7, "3.5", 4.0, id="under-the-tenants-own-factor"),
    ],
)
def test_no_anomaly(acme, mailoutbox, days, spike, factor):
    acme.cost_anomaly_factor = factor
    acme.save()
    history(acme, days)
    event(acme, at(TODAY - timedelta(days=1)), cost=spike)

    assert anomalies.flag_and_alert(today=TODAY) == 0
    assert not CostAnomaly.objects.exists() and mailoutbox == []


def test_a_zero_baseline_flags_nothing(acme, mailoutbox):
    history(acme, 7, cost="0")
    event(acme, at(TODAY - timedelta(days=1)), cost="5")
    assert anomalies.flag_and_alert(today=TODAY) == 0
    assert not CostAnomaly.objects.exists()


def test_the_tenants_factor_overrides_the_operators(acme, settings, mailoutbox):
    settings.COST_ANOMALY_FACTOR = 10.0
    acme.cost_anomaly_factor = 1.5
    acme.save()
    history(acme, 3)
    event(acme, at(TODAY - timedelta(days=1)), cost="2")

    assert anomalies.flag_and_alert(today=TODAY) == 1
    assert CostAnomaly.objects.get().factor == 1.5

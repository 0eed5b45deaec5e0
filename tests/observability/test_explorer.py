"""The call log explorer (observability.explorer and its pages): every filter, tenant
isolation, the exports, one call's timeline and bodies, the settings form, the operator's
pages. The world is tests/observability/calls_world.py."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from observability import explorer, timeline
from portal.models import AuditEvent
from tests.observability.calls_world import A_CALLS, build, call, keep_bodies

pytestmark = pytest.mark.django_db


@pytest.fixture
def w():
    return build()


def calls_url(w, **kw):
    return reverse("observability:calls", args=[w.a.slug])


def call_url(tenant, request_id):
    return reverse("observability:call", args=[tenant.slug, request_id])


def rows(response) -> set[str]:
    return set(re.findall(r'data-request-id="([^"]+)"', response.content.decode()))


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


# --- every filter --------------------------------------------------------------------------

FILTERS = [
    ("nothing", lambda w: {}, A_CALLS),
    ("last 1h", lambda w: {"last": "1h"}, {"ok-1"}),
    ("last 24h", lambda w: {"last": "24h"}, {"ok-1", "slow-2"}),
    ("last 7d", lambda w: {"last": "7d"}, {"ok-1", "slow-2", "bad-3"}),
    (
        "from and to",
        lambda w: {
            "from": iso(timezone.now() - timedelta(days=4)),
            "to": iso(timezone.now() - timedelta(hours=1)),
        },
        {"slow-2", "bad-3"},
    ),
    ("application", lambda w: {"application": w.bot.pk}, {"ok-1"}),
    ("key", lambda w: {"key": w.web_key.pk}, {"slow-2"}),
    ("public model", lambda w: {"model": "big-model"}, {"slow-2"}),
    ("upstream model", lambda w: {"model": "gpt-x"}, {"slow-2"}),
    ("provider", lambda w: {"provider": "openai"}, {"slow-2", "bad-3"}),
    ("exact status", lambda w: {"status": "429"}, {"bad-3"}),
    ("2xx", lambda w: {"status": "2xx"}, {"ok-1", "slow-2"}),
    ("4xx", lambda w: {"status": "4xx"}, {"bad-3"}),
    ("5xx", lambda w: {"status": "5xx"}, {"err-4"}),
    ("errors", lambda w: {"status": "errors"}, {"bad-3", "err-4"}),
    ("latency range", lambda w: {"latency_min": 50, "latency_max": 400}, {"ok-1", "err-4"}),
    ("latency min", lambda w: {"latency_min": 1000}, {"slow-2"}),
    ("cost min", lambda w: {"cost_min": "0.5"}, {"slow-2"}),
    ("cost max", lambda w: {"cost_max": "0.1"}, {"ok-1"}),
    ("cache hit", lambda w: {"cache": "hit"}, {"ok-1"}),
    ("cache semantic hit", lambda w: {"cache": "semantic-hit"}, {"err-4"}),
    ("cache miss", lambda w: {"cache": "miss"}, {"slow-2"}),
    ("cache not consulted", lambda w: {"cache": "none"}, {"bad-3"}),
    ("guardrail blocked", lambda w: {"guardrail": "blocked"}, {"bad-3"}),
    ("guardrail flagged", lambda w: {"guardrail": "flagged"}, {"err-4"}),
    ("guardrail redacted", lambda w: {"guardrail": "redacted"}, {"slow-2", "err-4"}),
    ("end user", lambda w: {"end_user": "u2"}, {"slow-2"}),
    ("tag", lambda w: {"tag": "prod"}, {"ok-1", "slow-2"}),
    ("second tag", lambda w: {"tag": "eu"}, {"ok-1"}),
    ("part of a tag is no tag", lambda w: {"tag": "pro"}, set()),
    ("route", lambda w: {"route": "messages"}, {"bad-3"}),
    ("request id", lambda w: {"request_id": "err-4"}, {"err-4"}),
    ("session", lambda w: {"session_id": "s1"}, {"ok-1"}),
    ("trace", lambda w: {"trace_id": "t1"}, {"ok-1"}),
    ("combined", lambda w: {"provider": "openai", "status": "errors"}, {"bad-3"}),
    ("another tenant's request id", lambda w: {"request_id": "b-1"}, set()),
]


@pytest.mark.parametrize(
    ("params", "expected"), [(p, e) for _, p, e in FILTERS], ids=[i for i, _, _ in FILTERS]
)
def test_each_filter_selects_exactly_its_calls(w, client, params, expected):
    form = explorer.CallFilterForm(params(w), tenant=w.a)
    assert form.is_valid(), form.errors
    events = explorer.filter_calls(
        explorer.calls_visible_to(user=w.alice, tenant=w.a), form.filters()
    )
    assert {e.request_id for e in events} == expected

    client.force_login(w.alice)
    page = client.get(calls_url(w), params(w))
    assert page.status_code == 200
    assert rows(page) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "abc"}, "status"),
        ({"status": "600"}, "status"),
        ({"latency_min": 500, "latency_max": 100}, "latency_max"),
        ({"cost_min": "-1"}, "cost_min"),
        ({"cache": "sometimes"}, "cache"),
        ({"guardrail": "ignored"}, "guardrail"),
        ({"last": "3y"}, "last"),
        ({"from": "yesterday"}, "from"),
    ],
    ids=["word", "600", "latency upside down", "negative cost", "cache", "guardrail", "3y", "date"],
)
def test_invalid_filters_show_the_error_and_no_calls(w, client, params, field):
    form = explorer.CallFilterForm(params, tenant=w.a)
    assert not form.is_valid() and field in form.errors
    client.force_login(w.alice)
    page = client.get(calls_url(w), params)
    assert page.status_code == 200
    assert rows(page) == set()
    assert 'id="filter-errors"' in page.content.decode()


def test_the_application_and_key_choices_are_the_tenants_own(w, client):
    form = explorer.CallFilterForm({"application": w.bot.pk}, tenant=w.b)
    assert not form.is_valid() and "application" in form.errors
    assert "tenant" not in explorer.CallFilterForm(tenant=w.a).fields
    client.force_login(w.alice)
    html = client.get(calls_url(w)).content.decode()
    assert "billing-bot" in html and "web-shop" in html
    assert "b-secret" not in html


# --- tenant isolation --------------------------------------------------------------------


def test_a_stranger_gets_404_for_the_list_and_each_call(w, client):
    client.force_login(w.mallory)
    assert client.get(calls_url(w)).status_code == 404
    assert client.get(call_url(w.a, "ok-1")).status_code == 404
    # through her own tenant, A's request id is unknown too
    assert client.get(call_url(w.b, "ok-1")).status_code == 404
    assert (
        client.get(reverse("observability:calls_export", args=[w.a.slug, "csv"])).status_code == 404
    )


def test_each_tenant_sees_only_its_own_calls(w, client):
    client.force_login(w.mallory)
    page = client.get(reverse("observability:calls", args=[w.b.slug]))
    assert rows(page) == {"b-1"}
    assert client.get(call_url(w.b, "b-1")).status_code == 200
    client.force_login(w.alice)
    assert rows(client.get(calls_url(w), {"tag": "prod"})) == {"ok-1", "slow-2"}
    assert client.get(call_url(w.a, "b-1")).status_code == 404
    # the tenant parameter is not the tenant page's: it is ignored there
    assert rows(client.get(calls_url(w), {"tenant": w.b.slug})) == A_CALLS


def test_the_doors_scope_by_membership(w):
    assert {e.request_id for e in explorer.calls_visible_to(user=w.victor)} == A_CALLS
    assert {e.request_id for e in explorer.calls_visible_to(user=w.mallory)} == {"b-1"}
    assert {e.request_id for e in explorer.calls_visible_to(user=w.olga)} == A_CALLS | {"b-1"}
    with pytest.raises(explorer.Http404):
        explorer.access_call_by_request_id(w.mallory, "ok-1")
    assert explorer.access_call_by_request_id(w.victor, "ok-1") == w.ok


def test_anonymous_visitors_are_sent_to_log_in(w, client):
    response = client.get(calls_url(w))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the list page -----------------------------------------------------------------------


def test_the_table_shows_each_calls_columns(w, client):
    client.force_login(w.victor)
    html = client.get(calls_url(w), {"request_id": "ok-1"}).content.decode()
    row = html[html.index('data-request-id="ok-1"') :]
    row = row[: row.index("</tr>")]
    for text in ("200", "chat.completions", "demo-chat", "billing-bot", w.bot_key.prefix, "hit"):
        assert text in row, text
    assert call_url(w.a, "ok-1") in row
    assert ">100<" in row and ">50<" in row  # latency and ttft in ms
    assert "10 / 5" in row and "0.010000" in row and "u1" in row
    blocked = client.get(calls_url(w), {"request_id": "bad-3"}).content.decode()
    assert ">blocked<" in blocked and ">429 <span" in blocked


def test_htmx_filtering_answers_only_the_results(w, client):
    client.force_login(w.alice)
    response = client.get(
        calls_url(w), {"status": "errors"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="calls-results"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="call-filters"' not in html
    assert rows(response) == {"bad-3", "err-4"}
    assert "status=errors" in html  # the export links keep the filters
    full = client.get(calls_url(w)).content.decode()
    assert 'hx-get="' in full and 'hx-target="#calls-results"' in full and "<html" in full


def test_pages_keep_the_filters(w, client):
    for n in range(25):
        call(w.a, f"many-{n:02d}", tags=["bulk"], ago=timedelta(minutes=n))
    client.force_login(w.alice)
    first = client.get(calls_url(w), {"tag": "bulk"})
    assert len(rows(first)) == 20
    html = first.content.decode()
    assert "?tag=bulk&amp;page=2" in html
    second = client.get(calls_url(w), {"tag": "bulk", "page": 2})
    assert len(rows(second)) == 5 and not rows(first) & rows(second)


# --- exports -----------------------------------------------------------------------------


def export(client, w, fmt, **params):
    response = client.get(reverse("observability:calls_export", args=[w.a.slug, fmt]), params)
    assert response.status_code == 200
    assert response.streaming
    return response, b"".join(response.streaming_content).decode()


def test_the_csv_export_has_a_header_and_one_row_per_call(w, client):
    client.force_login(w.victor)
    response, text = export(client, w, "csv")
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="calls-tenant-a-' in response["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == list(explorer.CSV_COLUMNS)
    assert {r["request_id"] for r in table} == A_CALLS
    by_id = {r["request_id"]: r for r in table}
    assert by_id["ok-1"]["tags"] == "prod;eu" and by_id["ok-1"]["cost"] == "0.0100000000"
    assert by_id["bad-3"]["guardrail_action"] == "blocked" and by_id["bad-3"]["cost"] == ""
    assert by_id["err-4"]["end_user"] == "'=HYPERLINK(1)"  # never a formula


def test_the_exports_follow_the_filters(w, client):
    client.force_login(w.alice)
    _, text = export(client, w, "csv", status="errors")
    assert sorted(r["request_id"] for r in csv.DictReader(io.StringIO(text))) == ["bad-3", "err-4"]
    _, lines = export(client, w, "jsonl", tag="prod")
    assert sorted(json.loads(line)["request_id"] for line in lines.splitlines()) == [
        "ok-1",
        "slow-2",
    ]


def test_the_jsonl_export_includes_the_bodies_kept(w, client):
    client.force_login(w.alice)
    response, text = export(client, w, "jsonl")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4 and "b-1" not in {r["request_id"] for r in lines}
    by_id = {r["request_id"]: r for r in lines}
    assert by_id["ok-1"]["bodies"]["request"]["messages"][0]["content"] == "Hi <b>[EMAIL_1]</b>"
    assert by_id["ok-1"]["bodies"]["response"]["choices"][0]["message"]["content"] == "Hello!"
    assert by_id["slow-2"]["bodies"] is None
    assert by_id["ok-1"]["attempts"][0]["outcome"] == "error"
    assert by_id["err-4"]["guardrails"]["flagged"] == {"injection:ignore": 1}
    assert by_id["err-4"]["guardrail_action"] == "flagged, redacted"


def test_an_unknown_export_format_is_404_and_bad_filters_400(w, client):
    client.force_login(w.alice)
    assert (
        client.get(reverse("observability:calls_export", args=[w.a.slug, "xml"])).status_code == 404
    )
    url = reverse("observability:calls_export", args=[w.a.slug, "csv"])
    assert client.get(url, {"status": "nope"}).status_code == 400


# --- one call ----------------------------------------------------------------------------


def test_the_timeline_puts_stages_in_order_and_attempts_within_upstream(w):
    spans = timeline.timeline(w.ok)
    got = [(s.kind, s.label, s.left, s.width) for s in spans]
    assert got == [
        ("stage", "Authentication", 0.0, 2.0),
        ("stage", "Guardrails", 2.0, 3.0),
        ("stage", "Cache lookup", 5.0, 5.0),
        ("attempt", "openai / demo-chat", 10.0, 40.0),
        ("attempt", "demo / demo-chat", 50.0, 50.0),
        ("stage", "Upstream", 10.0, 90.0),
        ("total", "First token", 0.0, 50.0),
        ("total", "Total", 0.0, 100.0),
    ]
    assert [s.outcome for s in spans if s.kind == "attempt"] == ["error", "ok"]


def test_a_timeline_copes_with_missing_timings(w):
    spans = timeline.timeline(w.bad)  # no timings, no attempts: the total from latency_ms
    assert [(s.label, s.width) for s in spans] == [("Total", 100.0)]
    w.bad.timings = {"cache_ms": "fast", "upstream_ms": 10}
    w.bad.attempts = [{"provider": "x", "model": "y", "outcome": "ok"}]
    assert [s.label for s in timeline.timeline(w.bad)] == ["Upstream", "Total"]


def test_the_call_page_shows_the_timeline_bars_and_bodies(w, client):
    client.force_login(w.victor)
    response = client.get(call_url(w.a, "ok-1"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'style="left: 10.0%; width: 40.0%"' in html  # the failed first attempt
    assert 'class="attempt failed"' in html
    assert 'style="left: 0.0%; width: 100.0%"' in html
    assert html.count('data-kind="stage"') == 4 and html.count('data-kind="attempt"') == 2
    assert "&quot;content&quot;: &quot;Hi &lt;b&gt;[EMAIL_1]&lt;/b&gt;&quot;" in html
    assert "\n  &quot;messages&quot;: [" in html  # pretty-printed
    assert 'id="response-body"' in html and "Hello!" in html
    assert "billing-bot" in html and "s1" in html and "prod, eu" in html


def test_the_call_page_shows_the_guardrail_outcome(w, client):
    client.force_login(w.alice)
    html = client.get(call_url(w.a, "err-4")).content.decode()
    guardrails = html[html.index('id="call-guardrails"') :]
    assert "injection:ignore" in guardrails and "PHONE" in guardrails
    assert "Blocked by" not in guardrails
    assert (
        "Blocked by <code>strict:pii</code>" in client.get(call_url(w.a, "bad-3")).content.decode()
    )


@pytest.mark.parametrize(
    ("setup", "missing", "text"),
    [
        (lambda w, s: None, "unknown", "none were stored"),
        (lambda w, s: setattr(s, "GATEWAY_LOG_BODIES", False), "operator", "by the operator"),
        (
            lambda w, s: w.a.__class__.objects.filter(pk=w.a.pk).update(log_bodies=False),
            "tenant",
            "for this tenant",
        ),
    ],
    ids=["unknown", "operator", "tenant"],
)
def test_missing_bodies_say_why(w, client, settings, setup, missing, text):
    setup(w, settings)
    w.a.refresh_from_db()
    assert explorer.bodies_of(w.slow, w.a).missing == missing
    client.force_login(w.alice)
    html = client.get(call_url(w.a, "slow-2")).content.decode()
    assert 'id="bodies-missing"' in html and text in html and 'id="request-body"' not in html


def test_bodies_older_than_the_retention_have_expired(w, client):
    # err-4 is 10 days old; A keeps bodies 7 days
    assert explorer.bodies_of(w.err, w.a).missing == "expired"
    client.force_login(w.alice)
    assert "expired — they are kept 7 days" in client.get(call_url(w.a, "err-4")).content.decode()
    w.a.log_retention_days = 14
    assert explorer.bodies_of(w.err, w.a).missing == "unknown"


def test_a_truncated_body_says_so(w, client):
    keep_bodies(w.slow, truncated=True)
    client.force_login(w.alice)
    html = client.get(call_url(w.a, "slow-2")).content.decode()
    assert "truncated" in html and 'id="request-body"' in html


# --- the call log settings ---------------------------------------------------------------


def settings_url(w):
    return reverse("observability:call_log_settings", args=[w.a.slug])


def test_owners_and_admins_see_and_change_the_settings(w, client, settings):
    settings.GATEWAY_LOG_MAX_RETENTION_DAYS = 30
    client.force_login(w.alice)
    assert 'id="call-log-settings"' in client.get(calls_url(w)).content.decode()
    client.force_login(w.adam)
    response = client.post(settings_url(w), {"log_retention_days": 30})  # unchecked: off
    assert response.status_code == 302 and response["Location"] == calls_url(w)
    w.a.refresh_from_db()
    assert (w.a.log_bodies, w.a.log_retention_days) == (False, 30)
    event = AuditEvent.objects.get(action="call_log.settings_changed")
    assert event.data == {"log_bodies": False, "log_retention_days": 30}
    client.post(settings_url(w), {"log_bodies": "on", "log_retention_days": 3})
    w.a.refresh_from_db()
    assert (w.a.log_bodies, w.a.log_retention_days) == (True, 3)


@pytest.mark.parametrize("days", [31, 0, -1, "many"], ids=["above max", "zero", "negative", "word"])
def test_a_retention_outside_1_to_the_max_is_refused(w, client, settings, days):
    settings.GATEWAY_LOG_MAX_RETENTION_DAYS = 30
    client.force_login(w.alice)
    response = client.post(settings_url(w), {"log_bodies": "on", "log_retention_days": days})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="error"' in html and "From 1 to 30 days" in html
    w.a.refresh_from_db()
    assert w.a.log_retention_days == 7
    assert not AuditEvent.objects.filter(action="call_log.settings_changed").exists()
    htmx = client.post(settings_url(w), {"log_retention_days": days}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 400 and "<html" not in htmx.content.decode()


def test_the_settings_service_checks_the_max_too(w):
    with pytest.raises(explorer.ServiceError):
        explorer.call_log_settings_update(
            actor=explorer.Actor(w.alice), tenant=w.a, log_bodies=True, log_retention_days=10_000
        )


def test_viewers_and_strangers_cannot_change_the_settings(w, client):
    client.force_login(w.victor)
    assert 'name="log_retention_days"' not in client.get(calls_url(w)).content.decode()
    assert client.post(settings_url(w), {"log_retention_days": 3}).status_code == 403
    assert client.get(settings_url(w)).status_code == 405
    client.force_login(w.mallory)
    assert client.post(settings_url(w), {"log_retention_days": 3}).status_code == 404
    w.a.refresh_from_db()
    assert (w.a.log_bodies, w.a.log_retention_days) == (True, 7)


# --- the operator ------------------------------------------------------------------------


def test_the_operator_sees_every_tenants_calls_and_filters_by_tenant(w, client):
    client.force_login(w.olga)
    url = reverse("observability:operator_calls")
    assert rows(client.get(url)) == A_CALLS | {"b-1"}
    page = client.get(url, {"tenant": w.b.slug})
    assert rows(page) == {"b-1"} and "tenant-b" in page.content.decode()
    assert rows(client.get(url, {"tag": "prod", "end_user": "u1"})) == {"ok-1", "b-1"}
    assert client.get(url, {"tenant": "no-such-tenant"}).status_code == 404
    detail = client.get(reverse("observability:operator_call", args=["b-1"]))
    assert detail.status_code == 200 and "B only" in detail.content.decode()


def test_operator_pages_are_for_staff_only(w, client):
    client.force_login(w.alice)
    assert client.get(reverse("observability:operator_calls")).status_code == 403
    assert client.get(reverse("observability:operator_call", args=["ok-1"])).status_code == 403


def test_the_nav_links_calls(w, client):
    client.force_login(w.alice)
    html = client.get(calls_url(w)).content.decode()
    assert f'href="{calls_url(w)}" aria-current="page">Calls<' in html
    assert reverse("observability:operator_calls") not in html
    client.force_login(w.olga)
    html = client.get(reverse("observability:operator_calls")).content.decode()
    assert "Calls (all)" in html

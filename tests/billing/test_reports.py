"""Usage rollups and monthly cost reports: exact to the raw events, files, the signed webhook."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import random
import re
import threading
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

import pytest
from django.db.models import Sum

from billing import report_files, report_webhooks, reports, rollups, tasks
from billing.models import Price, ReportWebhook, UsageEvent, UsageRollup, UsageRollupMark
from portal import services
from portal.models import AuditEvent, Tenant
from portal.services import Actor

pytestmark = pytest.mark.django_db

_ids = count(1)
SEP = datetime(2026, 9, 1, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def add_event(
    *,
    at: datetime,
    tenant: Tenant | None,
    key=None,
    cost: Decimal | str | None = "0.0000010000",
    model: str = "chat",
    served_model: str = "",
    provider: str = "openai-main",
    upstream_model: str = "gpt-4o-mini",
    input_tokens: int | None = 10,
    output_tokens: int | None = 5,
    cached_input_tokens: int | None = None,
    status: int = 200,
    cache: str = "",
    cache_saved: Decimal | str | None = None,
) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req-{next(_ids)}-{random.random()}",
        created_at=at,
        tenant_id=tenant.pk if tenant else None,
        api_key_id=key.pk if key else None,
        application_id=key.application_id if key else None,  # as the gateway records it
        route="chat.completions",
        public_model=model,
        served_model=served_model,
        provider=provider,
        upstream_model=upstream_model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cost=None if cost is None else Decimal(cost),
        latency_ms=1.0,
        status=status,
        cache=cache,
        cache_saved=None if cache_saved is None else Decimal(cache_saved),
    )


def raw_cost(tenant, start, end) -> Decimal:
    events = UsageEvent.objects.filter(
        tenant_id=tenant.pk, created_at__gte=start, created_at__lt=end
    )
    return events.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def raw_hits(tenant, start, end) -> tuple[int, Decimal]:
    """The response-cache hits of the raw events and what they saved (hits only)."""
    hits = UsageEvent.objects.filter(
        tenant_id=tenant.pk,
        created_at__gte=start,
        created_at__lt=end,
        cache__in=("hit", "semantic-hit"),
    )
    return hits.count(), hits.aggregate(saved=Sum("cache_saved"))["saved"] or Decimal(0)


def cached_answer(rng: random.Random) -> dict:
    """The response-cache side of a random event: mostly not consulted or a miss; a hit sent
    nothing upstream (no tokens), costs 0 or a per-hit price and saved the original's cost."""
    kind = rng.choice(["", "", "", "miss", "bypass", "hit", "semantic-hit"])
    if kind not in ("hit", "semantic-hit"):
        return {"cache": kind}
    return {
        "cache": kind,
        "cost": rng.choice(["0", "0.0001"]),
        "cache_saved": Decimal(rng.randint(1, 9_999_999_999)) / Decimal(10**10),
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": None,
    }


@pytest.fixture
def world(django_user_model):
    alice = django_user_model.objects.create_user("alice", "alice@example.com")
    mallory = django_user_model.objects.create_user("mallory", "mallory@example.com")
    a = services.tenant_create(actor=Actor(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=Actor(mallory), name="Tenant B", slug="tenant-b")
    web = services.application_create(actor=Actor(alice), tenant=a, name="web")
    batch = services.application_create(actor=Actor(alice), tenant=a, name="batch")
    keys = [
        services.api_key_create(actor=Actor(alice), tenant=a, application=app, name=name).api_key
        for app, name in ((web, "web-1"), (web, "web-2"), (batch, "batch-1"))
    ]
    b_app = services.application_create(actor=Actor(mallory), tenant=b, name="b-app")
    b_key = services.api_key_create(
        actor=Actor(mallory), tenant=b, application=b_app, name="b-key"
    ).api_key
    return {
        "alice": alice,
        "a": a,
        "b": b,
        "web": web,
        "batch": batch,
        "keys": keys,
        "b_key": b_key,
    }


def odd_cost(rng: random.Random) -> Decimal | None:
    if rng.random() < 0.05:
        return None  # no price: counts as a request, costs nothing
    return Decimal(rng.randint(1, 9_999_999_999)) / Decimal(10**10) * rng.choice((1, 3, 70))


def fill_two_months(world, rng: random.Random, n: int = 700) -> None:
    """Events of odd costs across September and October 2026 (and a little of tenant B),
    including keys without an application, no key at all, errors and the month edges."""
    keys = [*world["keys"], None]
    models = ["chat", "coder", "embed-small"]
    for _ in range(n):
        at = SEP + timedelta(seconds=rng.randrange(int((NOV - SEP).total_seconds())))
        event = {
            "key": rng.choice(keys),
            "cost": odd_cost(rng),
            "model": rng.choice(models),
            "served_model": rng.choice(["", "", "claude-chat"]),
            "provider": rng.choice(["openai-main", "claude"]),
            "input_tokens": rng.randint(1, 5000),
            "output_tokens": rng.randint(0, 2000),
            "cached_input_tokens": rng.choice([None, 0, rng.randint(0, 500)]),
            "status": rng.choice([200] * 9 + [502]),
        }
        add_event(at=at, tenant=world["a"], **(event | cached_answer(rng)))
    for at in (OCT - timedelta(microseconds=1), OCT, NOV - timedelta(microseconds=1), NOV):
        add_event(at=at, tenant=world["a"], key=world["keys"][0], cost="0.1234567891")
    for _ in range(30):
        at = SEP + timedelta(hours=rng.randrange(24 * 60))
        add_event(at=at, tenant=world["b"], key=world["b_key"], cost=odd_cost(rng))


def assert_breakdowns_sum_to_total(report: reports.CostReport) -> None:
    for lines in (report.by_application, report.by_key, report.by_model):
        assert sum((line.cost for line in lines), Decimal(0)) == report.total.cost
        assert sum(line.requests for line in lines) == report.total.requests
        assert sum(line.input_tokens for line in lines) == report.total.input_tokens
        assert sum(line.cache_savings for line in lines) == report.total.cache_savings
        hits = sum(line.response_cache_hits for line in lines)
        assert hits == report.total.response_cache_hits
        saved = sum((line.response_cache_saved for line in lines), Decimal(0))
        assert saved == report.total.response_cache_saved


# --- rollups -----------------------------------------------------------------------------


def rollup_rows(granularity):
    fields = ["bucket_start", "tenant_id", *rollups.DIMENSIONS, *rollups.MEASURES]
    return sorted(
        UsageRollup.objects.filter(granularity=granularity).values_list(*fields),
        key=repr,
    )


def test_rollups_are_idempotent_and_a_recompute_replaces_the_bucket(world):
    rng = random.Random(7)
    web1, web2, batch1 = world["keys"]
    start = OCT + timedelta(days=3)
    for i in range(120):
        add_event(
            at=start + timedelta(minutes=7 * i),  # 14 hours
            tenant=world["a"],
            key=rng.choice([web1, web2, batch1, None]),
            cost=odd_cost(rng),
            model=rng.choice(["chat", "coder"]),
            status=rng.choice([200, 200, 429]),
        )

    written = rollups.rollup(rollups.HOUR, start, start + timedelta(hours=14))
    first = rollup_rows(rollups.HOUR)
    assert written == len(first) > 14
    assert rollups.rollup(rollups.HOUR, start, start + timedelta(hours=14)) == written
    assert rollup_rows(rollups.HOUR) == first  # same rows, no duplicates

    # the rollups hold the raw events exactly, per dimension
    assert sum(r.cost for r in UsageRollup.objects.all()) == raw_cost(world["a"], OCT, NOV)
    assert sum(r.requests for r in UsageRollup.objects.all()) == 120
    web1_rows = UsageRollup.objects.filter(api_key_id=web1.pk)
    assert {r.application_id for r in web1_rows} == {world["web"].pk}
    assert (
        sum(r.requests for r in web1_rows) == UsageEvent.objects.filter(api_key_id=web1.pk).count()
    )
    assert sum(r.errors for r in UsageRollup.objects.all()) == (
        UsageEvent.objects.filter(status__gte=400).count()
    )

    # a late event: the next recompute of its bucket replaces the bucket's rows
    late = add_event(at=start + timedelta(minutes=5), tenant=world["a"], key=web1, cost="1.5")
    rollups.rollup(rollups.HOUR, start, start + timedelta(minutes=1))
    bucket = UsageRollup.objects.filter(granularity="hour", bucket_start=start)
    assert sum(r.cost for r in bucket) == raw_cost(world["a"], start, start + timedelta(hours=1))
    assert (
        UsageRollupMark.objects.get(granularity="hour", bucket_start=start).max_event_id == late.pk
    )
    assert sum(r.cost for r in UsageRollup.objects.all()) == raw_cost(world["a"], OCT, NOV)

    # days agree with hours
    rollups.rollup(rollups.DAY, start, start + timedelta(hours=1))
    day = UsageRollup.objects.filter(granularity="day")
    assert {r.bucket_start for r in day} == {start.replace(hour=0)}
    hours = UsageRollup.objects.filter(granularity="hour")
    assert sum(r.cost for r in day) == sum(r.cost for r in hours)
    assert sum(r.requests for r in day) == sum(r.requests for r in hours) == 121


def test_the_model_is_the_one_that_answered_and_empty_buckets_are_marked(world):
    day = OCT + timedelta(days=1)
    add_event(at=day, tenant=world["a"], model="auto", served_model="chat", cost="0.5")
    add_event(at=day, tenant=world["a"], model="coder", cost="0.25")
    rollups.rollup(rollups.DAY, day, day + timedelta(days=3))
    assert dict(UsageRollup.objects.values_list("model", "cost")) == {
        "chat": Decimal("0.5"),
        "coder": Decimal("0.25"),
    }
    marked = UsageRollupMark.objects.filter(granularity="day").values_list(
        "bucket_start", flat=True
    )
    assert sorted(marked) == [day + timedelta(days=n) for n in range(3)]


def test_the_beat_tasks_roll_up_the_recent_buckets(world):
    from django.utils import timezone

    now = timezone.now()
    add_event(at=now - timedelta(hours=1), tenant=world["a"], cost="0.3")
    add_event(at=now, tenant=world["a"], cost="0.4")
    tasks.rollup_recent_hours()
    tasks.rollup_recent_days()
    hours = UsageRollup.objects.filter(granularity="hour")
    assert sum(r.cost for r in hours) == Decimal("0.7")
    assert UsageRollupMark.objects.filter(granularity="hour").count() == 2
    assert UsageRollupMark.objects.filter(granularity="day").count() == 2


def add_cache_mix(world, at: datetime) -> None:
    """Two exact hits, a semantic hit, and events that saved nothing: a miss (with a stray
    cache_saved, which must not count), a bypass and one that didn't consult the cache."""
    a, (web1, web2, batch1) = world["a"], world["keys"]
    tokens = {"input_tokens": 0, "output_tokens": 0}
    add_event(
        at=at, tenant=a, key=web1, cost="0", cache="hit", cache_saved="0.0123456789", **tokens
    )
    add_event(
        at=at + timedelta(minutes=5),
        tenant=a,
        key=web1,
        cost="0.0001",  # a per-hit price
        cache="hit",
        cache_saved="0.2500000001",
        **tokens,
    )
    add_event(
        at=at + timedelta(hours=2),
        tenant=a,
        key=batch1,
        model="coder",
        cost="0",
        cache="semantic-hit",
        cache_saved="1.0000000000",
        **tokens,
    )
    add_event(at=at, tenant=a, key=web2, cost="0.02", cache="miss", cache_saved="7")
    add_event(at=at, tenant=a, key=web2, cost="0.03", cache="bypass")
    add_event(at=at + timedelta(hours=2), tenant=a, key=batch1, cost="0.04", cache="")
    # another tenant's hit is not A's
    add_event(at=at, tenant=world["b"], key=world["b_key"], cost="0", cache="hit", cache_saved="5")


def test_rollups_count_response_cache_hits_and_sum_what_they_saved(world):
    start = OCT + timedelta(days=6)
    add_cache_mix(world, start)
    a = world["a"]

    assert rollups.rollup(rollups.HOUR, start, start + timedelta(hours=3)) > 0
    first = rollup_rows(rollups.HOUR)
    mine = UsageRollup.objects.filter(granularity="hour", tenant_id=a.pk)
    assert sum(r.response_cache_hits for r in mine) == 3
    assert sum(r.response_cache_saved for r in mine) == Decimal("1.2623456790")
    # per bucket and key: web1's two hits in the first hour, batch1's semantic hit two hours on
    per_key: dict[tuple, tuple[int, Decimal]] = {}
    for r in mine:  # a key's bucket has a row per model
        hits, saved = per_key.get((r.bucket_start, r.api_key_id), (0, Decimal(0)))
        per_key[r.bucket_start, r.api_key_id] = (
            hits + r.response_cache_hits,
            saved + r.response_cache_saved,
        )
    web1, web2, batch1 = world["keys"]
    assert per_key == {
        (start, web1.pk): (2, Decimal("0.2623456790")),
        (start, web2.pk): (0, Decimal(0)),  # the miss's stray cache_saved and the bypass
        (start + timedelta(hours=2), batch1.pk): (1, Decimal("1.0000000000")),
    }
    other = UsageRollup.objects.get(granularity="hour", tenant_id=world["b"].pk)
    assert (other.response_cache_hits, other.response_cache_saved) == (1, Decimal(5))

    # idempotent: the same rows again
    rollups.rollup(rollups.HOUR, start, start + timedelta(hours=3))
    assert rollup_rows(rollups.HOUR) == first

    # a late hit: recomputing its bucket replaces the bucket's figures
    add_event(
        at=start + timedelta(minutes=30),
        tenant=a,
        key=web1,
        cost="0",
        cache="semantic-hit",
        cache_saved="0.0000000010",
    )
    rollups.rollup(rollups.HOUR, start, start + timedelta(minutes=1))
    row = UsageRollup.objects.get(granularity="hour", bucket_start=start, api_key_id=web1.pk)
    assert (row.response_cache_hits, row.response_cache_saved) == (3, Decimal("0.2623456800"))

    # days agree with hours
    rollups.rollup(rollups.DAY, start, start + timedelta(hours=1))
    (day,) = UsageRollup.objects.filter(granularity="day", tenant_id=a.pk, api_key_id=web1.pk)
    assert (day.response_cache_hits, day.response_cache_saved) == (3, Decimal("0.2623456800"))


# --- reports: exact to the raw events ------------------------------------------------------


def test_report_totals_equal_the_raw_events_to_the_cent_with_and_without_rollups(world):
    rng = random.Random(20261128)
    fill_two_months(world, rng)
    a = world["a"]
    raw_oct, raw_sep = raw_cost(a, OCT, NOV), raw_cost(a, SEP, OCT)
    assert raw_oct.as_tuple().exponent == -10 and raw_oct > 0  # odd, unrounded figures

    # embedded mode: nothing rolled up, the raw events
    plain = reports.monthly_report(a, 2026, 10)
    assert plain.total.cost == raw_oct
    assert reports.usd(plain.total.cost) == reports.usd(raw_oct)
    events = UsageEvent.objects.filter(tenant_id=a.pk, created_at__gte=OCT, created_at__lt=NOV)
    assert plain.total.requests == events.count()
    assert plain.total.unpriced_requests == events.filter(cost__isnull=True).count()
    assert plain.total.errors == events.filter(status__gte=400).count()
    assert plain.total.input_tokens == events.aggregate(n=Sum("input_tokens"))["n"]
    hits, saved = raw_hits(a, OCT, NOV)
    assert hits > 0 and saved.as_tuple().exponent == -10  # odd, unrounded figures
    assert (plain.total.response_cache_hits, plain.total.response_cache_saved) == (hits, saved)
    assert plain.trend.previous_cost == raw_sep
    assert_breakdowns_sum_to_total(plain)

    # beat rolled up part of the months; then late events arrive in rolled-up days
    rollups.rollup(rollups.DAY, SEP + timedelta(days=3), OCT + timedelta(days=20))
    rollups.rollup(rollups.HOUR, OCT, OCT + timedelta(days=2))
    rolled = reports.monthly_report(a, 2026, 10)
    assert rolled.total == plain.total
    assert rolled.by_application == plain.by_application
    assert rolled.by_key == plain.by_key
    assert rolled.by_model == plain.by_model
    assert rolled.trend == plain.trend
    for day in (2, 9, 19):
        add_event(
            at=OCT + timedelta(days=day, hours=5),
            tenant=a,
            key=world["keys"][2],
            cost="0.0000000003",
        )
    add_event(at=SEP + timedelta(days=10), tenant=a, cost="2.0000000001")
    add_event(  # a late hit in a rolled-up day
        at=OCT + timedelta(days=4, hours=2),
        tenant=a,
        cost="0",
        cache="hit",
        cache_saved="0.0000000007",
        input_tokens=0,
        output_tokens=0,
    )
    late = reports.monthly_report(a, 2026, 10)
    assert late.total.cost == raw_cost(a, OCT, NOV) == raw_oct + Decimal("0.0000000009")
    assert late.total.response_cache_hits == hits + 1
    assert late.total.response_cache_saved == saved + Decimal("0.0000000007")
    assert (late.total.response_cache_hits, late.total.response_cache_saved) == raw_hits(
        a, OCT, NOV
    )
    assert late.total.requests == plain.total.requests + 4
    assert late.trend.previous_cost == raw_cost(a, SEP, OCT)
    assert_breakdowns_sum_to_total(late)

    # and once everything is rolled up again
    rollups.rollup(rollups.DAY, SEP, NOV)
    again = reports.monthly_report(a, 2026, 10)
    assert again.total == late.total and again.by_key == late.by_key
    september = reports.monthly_report(a, 2026, 9)
    assert september.total.cost == raw_cost(a, SEP, OCT)
    assert_breakdowns_sum_to_total(september)

    # tenant B's events are B's alone
    b_report = reports.monthly_report(world["b"], 2026, 9)
    assert b_report.total.cost == raw_cost(world["b"], SEP, OCT)
    b_events = UsageEvent.objects.filter(tenant_id=world["b"].pk, created_at__lt=OCT)
    assert b_report.total.requests == b_events.count() > 0


def test_rolled_up_days_are_read_from_the_rollups(world):
    """White-box: a marked day comes from UsageRollup (here made to disagree on purpose)."""
    day = OCT + timedelta(days=4)
    event = add_event(at=day, tenant=world["a"], cost="1.00")
    rollups.rollup(rollups.DAY, day, day + timedelta(days=1))
    UsageEvent.objects.filter(pk=event.pk).update(cost=Decimal("5.00"))
    assert reports.monthly_report(world["a"], 2026, 10).total.cost == Decimal("1.00")
    UsageRollupMark.objects.all().delete()
    assert reports.monthly_report(world["a"], 2026, 10).total.cost == Decimal("5.00")


def test_breakdown_rows_name_applications_keys_and_models(world):
    web1, web2, batch1 = world["keys"]
    day = OCT + timedelta(days=2)
    add_event(at=day, tenant=world["a"], key=web1, cost="1.25", model="chat")
    add_event(at=day, tenant=world["a"], key=web2, cost="0.75", model="coder")
    add_event(at=day, tenant=world["a"], key=batch1, cost="3.00", model="chat")
    add_event(at=day, tenant=world["a"], key=None, cost="0.10", model="")
    report = reports.monthly_report(world["a"], 2026, 10)
    assert [(line.label, line.cost) for line in report.by_application] == [
        ("batch", Decimal("3.00")),
        ("web", Decimal("2.00")),
        ("(no application)", Decimal("0.10")),
    ]
    assert [line.label.split(" (")[0] for line in report.by_key] == [
        "batch-1",
        "web-1",
        "web-2",
        "(no key)",
    ]
    assert [(line.label, line.requests) for line in report.by_model] == [
        ("chat", 2),
        ("coder", 1),
        ("(unknown model)", 1),
    ]
    assert report.total.cost == Decimal("5.10")


def test_trend_against_the_previous_month(world):
    a = world["a"]
    add_event(at=SEP + timedelta(days=3), tenant=a, cost="6")
    add_event(at=SEP + timedelta(days=20), tenant=a, cost="4")
    add_event(at=OCT + timedelta(days=1), tenant=a, cost="12.5")
    report = reports.monthly_report(a, 2026, 10)
    assert report.trend.previous_month == "2026-09"
    assert report.trend.previous_cost == Decimal(10)
    assert report.trend.change == Decimal("2.5")
    assert report.trend.change_pct == Decimal("25.00")
    assert report.trend.change_display == "+$2.50"
    down = reports.monthly_report(a, 2026, 11)
    assert down.trend.change == Decimal("-12.5") and down.trend.change_pct == Decimal("-100.00")
    first = reports.monthly_report(a, 2026, 9)
    assert first.trend.previous_month == "2026-08" and first.trend.change_pct is None
    assert first.trend.change_pct_display == "n/a"


def test_january_trend_looks_at_the_previous_december(world):
    add_event(at=datetime(2025, 12, 31, 23, 59, tzinfo=UTC), tenant=world["a"], cost="2")
    report = reports.monthly_report(world["a"], 2026, 1)
    assert report.trend.previous_month == "2025-12" and report.trend.previous_cost == 2


def test_cache_savings_use_the_price_in_force_at_each_event(world):
    a = world["a"]
    Price.objects.create(
        model_name="chat",
        input_per_mtok=Decimal(2),
        output_per_mtok=Decimal(8),
        cached_input_per_mtok=Decimal("0.5"),
        effective_from=SEP,
    )
    Price.objects.create(
        model_name="chat",
        input_per_mtok=Decimal(4),
        output_per_mtok=Decimal(8),
        cached_input_per_mtok=Decimal(1),
        effective_from=OCT + timedelta(days=15),
    )
    # a deployment's own price wins over its model's; no cached price: nothing saved
    Price.objects.create(
        model_name="azure/my-mini",
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(8),
        cached_input_per_mtok=None,
        effective_from=SEP,
    )
    # the upstream model's list price when neither the deployment nor the model has one
    Price.objects.create(
        model_name="claude-haiku-4-5",
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(5),
        cached_input_per_mtok=Decimal("0.1"),
        effective_from=SEP,
    )
    add_event(
        at=OCT + timedelta(days=10), tenant=a, input_tokens=2_000_000, cached_input_tokens=1_000_000
    )
    add_event(
        at=OCT + timedelta(days=20), tenant=a, input_tokens=600_000, cached_input_tokens=500_000
    )
    add_event(
        at=OCT + timedelta(days=20),
        tenant=a,
        provider="azure",
        upstream_model="my-mini",
        input_tokens=900,
        cached_input_tokens=900,
    )
    add_event(
        at=OCT + timedelta(days=21),
        tenant=a,
        model="haiku",
        provider="claude",
        upstream_model="claude-haiku-4-5",
        input_tokens=10_000,
        cached_input_tokens=30_000,  # more than the input: capped, as pricing does
    )
    expected = Decimal("1.5") + Decimal("1.5") + Decimal(0) + Decimal("0.009")
    report = reports.monthly_report(a, 2026, 10)
    assert report.total.cache_savings == expected
    assert {line.label: line.cache_savings for line in report.by_model} == {
        "chat": Decimal(3),
        "haiku": Decimal("0.009"),
    }
    rollups.rollup(rollups.DAY, OCT, NOV)
    assert reports.monthly_report(a, 2026, 10).total.cache_savings == expected


def test_reports_show_response_cache_hits_and_savings_apart_from_prompt_caching(world):
    a = world["a"]
    web1, web2, batch1 = world["keys"]
    Price.objects.create(
        model_name="chat",
        input_per_mtok=Decimal(2),
        output_per_mtok=Decimal(8),
        cached_input_per_mtok=Decimal("0.5"),
        effective_from=SEP,
    )
    add_cache_mix(world, OCT + timedelta(days=6))
    # prompt caching saves 1.5 (1M cached tokens x $1.5/M); it is no response-cache hit
    add_event(
        at=OCT + timedelta(days=8),
        tenant=a,
        key=web2,
        cost="0",
        input_tokens=2_000_000,
        cached_input_tokens=1_000_000,
    )
    add_event(at=SEP + timedelta(days=3), tenant=a, cost="0", cache="hit", cache_saved="3")

    def check(report: reports.CostReport) -> None:
        total = report.total
        assert (total.response_cache_hits, total.response_cache_saved) == (
            3,
            Decimal("1.2623456790"),
        )
        assert total.cache_savings == Decimal("1.5")
        assert total.cost == Decimal("0.0901")  # the per-hit price, the miss and the rest
        by_key = {
            line.id: (line.response_cache_hits, line.response_cache_saved) for line in report.by_key
        }
        assert by_key == {
            web1.pk: (2, Decimal("0.2623456790")),
            web2.pk: (0, Decimal(0)),
            batch1.pk: (1, Decimal("1.0000000000")),
        }
        by_model = {line.label: line.response_cache_hits for line in report.by_model}
        assert by_model == {"chat": 2, "coder": 1}
        assert_breakdowns_sum_to_total(report)

    plain = reports.monthly_report(a, 2026, 10)
    check(plain)
    rollups.rollup(rollups.DAY, SEP, NOV)
    rolled = reports.monthly_report(a, 2026, 10)
    check(rolled)
    assert rolled.total == plain.total and rolled.by_key == plain.by_key

    data = rolled.as_dict()["total"]
    assert data["response_cache_hits"] == 3
    assert data["response_cache_saved_usd"] == "1.2623456790"
    assert data["cache_savings_usd"] == "1.500000000000"
    assert rolled.total.response_cache_saved_display == "$1.26"

    rows = list(csv.DictReader(io.StringIO(report_files.report_csv(rolled).decode("utf-8"))))
    (total,) = [row for row in rows if row["section"] == "total"]
    assert total["response_cache_hits"] == "3"
    assert total["response_cache_saved_usd"] == "1.2623456790"
    assert total["cache_savings_usd"] == "1.500000000000"
    keys = [row for row in rows if row["section"] == "key"]
    assert sum(int(row["response_cache_hits"]) for row in keys) == 3
    assert sum(Decimal(row["response_cache_saved_usd"]) for row in keys) == Decimal("1.2623456790")
    (previous,) = [row for row in rows if row["section"] == "previous_month"]
    assert previous["response_cache_hits"] == previous["response_cache_saved_usd"] == ""

    text = pdf_text(report_files.report_pdf(rolled))
    assert "Saved by prompt caching: $1.50" in text
    # (PDF strings escape parentheses, so the hits are looked for on their own)
    assert "Saved by the response cache: $1.26" in text and "3 answers from the cache" in text
    assert "cache hits" in text  # the tables' column (its heading wraps)


# --- files ---------------------------------------------------------------------------------


def test_csv_parses_and_its_sections_sum_to_the_total(world):
    fill_two_months(world, random.Random(3), n=250)
    report = reports.monthly_report(world["a"], 2026, 10)
    rows = list(csv.DictReader(io.StringIO(report_files.report_csv(report).decode("utf-8"))))
    assert list(rows[0]) == list(report_files.CSV_COLUMNS)
    (total,) = [row for row in rows if row["section"] == "total"]
    assert Decimal(total["cost_usd"]) == report.total.cost == raw_cost(world["a"], OCT, NOV)
    for section in ("application", "key", "model"):
        lines = [row for row in rows if row["section"] == section]
        assert lines
        assert sum(Decimal(row["cost_usd"]) for row in lines) == Decimal(total["cost_usd"])
        assert sum(int(row["requests"]) for row in lines) == int(total["requests"])
    (previous,) = [row for row in rows if row["section"] == "previous_month"]
    assert previous["name"] == "2026-09"
    assert Decimal(previous["cost_usd"]) == raw_cost(world["a"], SEP, OCT)
    assert {row["tenant"] for row in rows} == {"tenant-a"} and {row["month"] for row in rows} == {
        "2026-10"
    }


def pdf_text(data: bytes) -> str:
    """The page content of a PDF: its Flate streams, inflated."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            out.append(zlib.decompress(match[1]).decode("latin-1"))
        except zlib.error:
            out.append(match[1].decode("latin-1"))
    return "\n".join(out)


def test_pdf_is_a_pdf_with_the_total(world):
    fill_two_months(world, random.Random(5), n=120)
    add_event(at=OCT + timedelta(days=1), tenant=world["a"], key=world["keys"][0], cost="1000")
    world["web"].name = "Web ünïcode → app"
    world["web"].save()
    report = reports.monthly_report(world["a"], 2026, 10)
    data = report_files.report_pdf(report)
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    text = pdf_text(data)
    assert f"Total cost: {reports.usd(report.total.cost)}" in text
    assert "By application" in text and "batch" in text


def test_an_empty_month_still_makes_files(world):
    report = reports.monthly_report(world["a"], 2026, 10)
    assert report.total.cost == 0 and report.by_key == ()
    assert report_files.report_pdf(report).startswith(b"%PDF")
    rows = list(csv.reader(io.StringIO(report_files.report_csv(report).decode())))
    assert [row[2] for row in rows[1:]] == ["total", "previous_month"]


# --- the chargeback webhook -------------------------------------------------------------------


class Receiver:
    """A chargeback system on loopback: verifies the signature like a real one would."""

    def __init__(self, secret: str, answer: int = 200) -> None:
        self.secret, self.answer, self.received = secret, answer, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-Waystation-Signature", "")
                fields = dict(part.split("=", 1) for part in header.split(","))
                expected = hmac.new(
                    receiver.secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256
                ).hexdigest()
                valid = hmac.compare_digest(expected, fields.get("v1", ""))
                receiver.received.append((valid, dict(self.headers), body))
                status = receiver.answer if valid else 400
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if valid else b"bad signature")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/chargeback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(secret, answer=200):
        made.append(Receiver(secret, answer))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_push_monthly_reports_posts_a_signed_report_once(world, receiver):
    fill_two_months(world, random.Random(11), n=150)
    a = world["a"]
    webhook, secret = report_webhooks.report_webhook_set(
        actor=Actor(world["alice"]), tenant=a, url="http://127.0.0.1:1/placeholder"
    )
    assert secret.startswith("wswhsec_") and secret not in webhook.secret_encrypted
    assert AuditEvent.objects.filter(action="report_webhook.created", tenant=a).exists()
    server = receiver(secret)
    webhook.url = server.url
    webhook.save()

    now = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    assert report_webhooks.push_monthly_reports(now=now) == 1
    ((valid, headers, body),) = server.received
    assert valid
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Waystation-Event"] == "cost_report.monthly"
    assert headers["X-Waystation-Delivery"] == "tenant-a:2026-10"
    assert report_webhooks.verify(secret, body, headers["X-Waystation-Signature"])
    assert not report_webhooks.verify("wrong", body, headers["X-Waystation-Signature"])
    assert not report_webhooks.verify(secret, body + b" ", headers["X-Waystation-Signature"])
    payload = json.loads(body)
    assert payload["month"] == "2026-10" and payload["tenant"] == "tenant-a"
    assert Decimal(payload["total"]["cost_usd"]) == raw_cost(a, OCT, NOV)
    assert payload == json.loads(json.dumps(reports.monthly_report(a, 2026, 10).as_dict())) | {
        "generated_at": payload["generated_at"]
    }
    webhook.refresh_from_db()
    assert webhook.last_pushed_month == "2026-10" and webhook.last_status == 200

    # delivered once: the next beat run on the 1st sends nothing
    assert report_webhooks.push_monthly_reports(now=now + timedelta(hours=1)) == 0
    assert len(server.received) == 1


def test_failed_deliveries_are_recorded_and_retried(world, receiver):
    a = world["a"]
    add_event(at=OCT + timedelta(days=2), tenant=a, cost="4.2")
    webhook, secret = report_webhooks.report_webhook_set(
        actor=Actor(world["alice"]), tenant=a, url="http://127.0.0.1:1/x"
    )
    down = receiver(secret, answer=503)
    webhook.url = down.url
    webhook.save()
    assert report_webhooks.push_monthly_reports(2026, 10) == 0
    webhook.refresh_from_db()
    assert webhook.last_status == 503 and webhook.last_pushed_month == ""
    assert webhook.last_error == "HTTP 503"

    # a receiver holding another secret rejects the signature
    wrong = receiver("not-the-secret")
    ReportWebhook.objects.filter(pk=webhook.pk).update(url=wrong.url)
    assert report_webhooks.push_monthly_reports(2026, 10) == 0
    assert wrong.received[0][0] is False

    # nobody listening
    ReportWebhook.objects.filter(pk=webhook.pk).update(url="http://127.0.0.1:9/none")
    assert report_webhooks.push_monthly_reports(2026, 10) == 0
    webhook.refresh_from_db()
    assert webhook.last_status is None and "URLError" in webhook.last_error

    up = receiver(secret)
    ReportWebhook.objects.filter(pk=webhook.pk).update(url=up.url)
    assert report_webhooks.push_monthly_reports(2026, 10) == 1
    assert up.received[0][0] is True
    assert json.loads(up.received[0][2])["total"]["cost_usd"] == "4.2000000000"


def test_rotating_the_secret_and_pausing(world, receiver):
    a = world["a"]
    _, first = report_webhooks.report_webhook_set(
        actor=Actor(world["alice"]), tenant=a, url="http://127.0.0.1:1/x"
    )
    _, same = report_webhooks.report_webhook_set(
        actor=Actor(world["alice"]), tenant=a, url="http://127.0.0.1:1/y"
    )
    assert same is None
    webhook, second = report_webhooks.report_webhook_set(
        actor=Actor(world["alice"]), tenant=a, url="http://127.0.0.1:1/y", rotate_secret=True
    )
    assert second and second != first
    server = receiver(second)
    ReportWebhook.objects.filter(pk=webhook.pk).update(url=server.url, enabled=False)
    assert report_webhooks.push_monthly_reports(2026, 10) == 0 and not server.received
    ReportWebhook.objects.filter(pk=webhook.pk).update(enabled=True)
    assert report_webhooks.push_monthly_reports(2026, 10) == 1 and server.received[0][0]
    with pytest.raises(services.ServiceError):
        report_webhooks.report_webhook_set(
            actor=Actor(world["alice"]), tenant=a, url="ftp://example.com/x"
        )


def test_only_owners_and_admins_set_the_webhook(world, django_user_model):
    from portal.access import Denied
    from portal.models import Membership, Role

    viewer = django_user_model.objects.create_user("victor", "victor@example.com")
    Membership.objects.create(user=viewer, tenant=world["a"], role=Role.VIEWER)
    with pytest.raises(Denied):
        report_webhooks.report_webhook_set(
            actor=Actor(viewer), tenant=world["a"], url="https://example.com/hook"
        )
    assert not ReportWebhook.objects.exists()


def test_months_parse_strictly():
    assert reports.parse_month("2026-02") == (2026, 2)
    for bad in ("2026-13", "2026-00", "26-01", "2026-1", "1999-12", "", "2026-01x"):
        with pytest.raises(ValueError):
            reports.parse_month(bad)
    assert reports.month_bounds(2024, 2) == (
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert reports.usd(Decimal("1234.565")) == "$1,234.57"
    assert reports.usd(Decimal("-0.004")) == "$0.00"

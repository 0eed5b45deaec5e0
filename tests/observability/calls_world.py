"""The world of the call log explorer's tests: alice owns tenant A (adam admin, victor
viewer), mallory owns tenant B, olga is the operator; four calls of A, one of B."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.models import UsageEvent
from observability import bodies
from observability.models import CallBody
from portal import services
from portal.models import Membership, Role

REQUEST = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hi <b>[EMAIL_1]</b>"}]}
RESPONSE = {"choices": [{"message": {"role": "assistant", "content": "Hello!"}}]}


def user(name, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", **extra)


def call(tenant, request_id, *, ago=timedelta(minutes=30), **fields):
    row = {
        "request_id": request_id,
        "created_at": timezone.now() - ago,
        "tenant_id": tenant.pk,
        "route": "chat.completions",
        "public_model": "demo-chat",
        "served_model": "demo-chat",
        "provider": "demo",
        "upstream_model": "demo-chat",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": Decimal("0.01"),
        "latency_ms": 100.0,
        "status": 200,
        **fields,
    }
    return UsageEvent.objects.create(**row)


def keep_bodies(event, data=None, *, truncated=False):
    blob, size = bodies.encode(data or {"request": REQUEST, "response": RESPONSE})
    return CallBody.objects.create(
        request_id=event.request_id,
        tenant_id=event.tenant_id,
        created_at=event.created_at,
        data=blob,
        size=size,
        truncated=truncated,
    )


def build():
    alice, adam, victor, mallory = (user(n) for n in ("alice", "adam", "victor", "mallory"))
    olga = user("olga", is_staff=True)
    a = services.tenant_create(actor=services.Actor(alice), name="Tenant A", slug="tenant-a")
    b = services.tenant_create(actor=services.Actor(mallory), name="Tenant B", slug="tenant-b")
    Membership.objects.create(user=adam, tenant=a, role=Role.ADMIN)
    Membership.objects.create(user=victor, tenant=a, role=Role.VIEWER)
    bot = services.application_create(actor=services.Actor(alice), tenant=a, name="billing-bot")
    web = services.application_create(actor=services.Actor(alice), tenant=a, name="web-shop")
    bot_key = services.api_key_create(tenant=a, application=bot, name="bot-ci").api_key
    web_key = services.api_key_create(tenant=a, application=web, name="web-prod").api_key
    ok = call(
        a,
        "ok-1",
        ago=timedelta(minutes=30),
        application_id=bot.pk,
        api_key_id=bot_key.pk,
        ttft_ms=50.0,
        cache="hit",
        cache_saved=Decimal("0.02"),
        end_user="u1",
        session_id="s1",
        trace_id="t1",
        tags=["prod", "eu"],
        timings={
            "auth_ms": 2,
            "guardrails_ms": 3,
            "cache_ms": 5,
            "upstream_ms": 90,
            "first_token_ms": 50,
            "total_ms": 100,
        },
        attempts=[
            {"provider": "openai", "model": "demo-chat", "outcome": "error", "ms": 40},
            {"provider": "demo", "model": "demo-chat", "outcome": "ok", "ms": 50},
        ],
    )
    slow = call(
        a,
        "slow-2",
        ago=timedelta(hours=5),
        application_id=web.pk,
        api_key_id=web_key.pk,
        public_model="big-model",
        served_model="big-model",
        upstream_model="gpt-x",
        provider="openai",
        latency_ms=5000.0,
        ttft_ms=800.0,
        cost=Decimal("1.5"),
        cache="miss",
        guardrails={"redacted": {"EMAIL": 2}},
        end_user="u2",
        tags=["prod"],
    )
    bad = call(
        a,
        "bad-3",
        ago=timedelta(days=3),
        route="messages",
        provider="openai",
        status=429,
        error_type="rate_limited",
        latency_ms=20.0,
        cost=None,
        guardrails={"blocked": "strict:pii"},
        tags=["staging"],
    )
    err = call(
        a,
        "err-4",
        ago=timedelta(days=10),
        route="embeddings",
        provider="anthropic",
        status=502,
        error_type="upstream_error",
        latency_ms=300.0,
        cost=Decimal("0.2"),
        cache="semantic-hit",
        guardrails={"flagged": {"injection:ignore": 1}, "redacted": {"PHONE": 1}},
        end_user="=HYPERLINK(1)",
    )
    theirs = call(b, "b-1", tags=["prod"], end_user="u1", status=500)
    keep_bodies(ok)
    keep_bodies(theirs, {"request": {"secret": "B only"}, "response": None})
    return SimpleNamespace(
        alice=alice,
        adam=adam,
        victor=victor,
        mallory=mallory,
        olga=olga,
        a=a,
        b=b,
        bot=bot,
        web=web,
        bot_key=bot_key,
        web_key=web_key,
        ok=ok,
        slow=slow,
        bad=bad,
        err=err,
        theirs=theirs,
    )


A_CALLS = {"ok-1", "slow-2", "bad-3", "err-4"}

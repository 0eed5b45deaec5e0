"""The live tail: the filter, the publisher's fan-out, and the websocket consumer.

alice owns tenant A (victor is a viewer there); mallory owns tenant B; stranger belongs
nowhere; olga is the operator (staff). The channel layer is the real one of the settings
(channels_redis when REDIS_URL is set); publish runs in a worker thread, as it does in the
usage writer and the drain task.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.routing import URLRouter
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import connections
from django.urls import re_path

from observability import tail
from observability.consumers import TailConsumer
from portal import services
from portal.models import Membership, Role


def call(**fields) -> dict:
    """A slimmed call, as a consumer gets it."""
    base = {
        "request_id": uuid.uuid4().hex,
        "public_model": "demo-chat",
        "served_model": "demo-chat",
        "route": "chat.completions",
        "status": 200,
        "application_id": 7,
        "api_key_id": 70,
        "latency_ms": 120.0,
        "end_user": "Customer-42",
        "tags": ["checkout", "beta"],
    }
    return {**base, **fields}


def row(tenant_id, request_id=None, **fields) -> dict:
    """A usage row, as the usage store gets it (bodies and all)."""
    return {
        "request_id": request_id or uuid.uuid4().hex,
        "created_at": "2026-01-02T03:04:05.678901+00:00",
        "tenant_id": tenant_id,
        "api_key_id": 70,
        "application_id": 7,
        "route": "chat.completions",
        "public_model": "demo-chat",
        "served_model": "demo-chat",
        "provider": "demo",
        "status": 200,
        "error_type": "",
        "latency_ms": 12.3456,
        "ttft_ms": None,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": "0.0000200000",
        "cache": "",
        "guardrails": {},
        "end_user": "",
        "tags": [],
        "attempts": [{"provider": "demo", "outcome": "ok"}],
        "timings": {"total_ms": 12.3},
        "body": (b"secret prompt", 13, False),
        **fields,
    }


# --- the filter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "fields", "expected"),
    [
        ({}, {}, True),
        ({"model": "CHAT"}, {}, True),
        ({"model": "embed"}, {}, False),
        ({"model": "mini"}, {"public_model": "auto", "served_model": "gpt-mini"}, True),
        ({"status": "errors"}, {"status": 429}, True),
        ({"status": "errors"}, {"status": 200}, False),
        ({"status": "ok"}, {"status": 200}, True),
        ({"status": "2xx"}, {"status": 201}, True),
        ({"status": "5xx"}, {"status": 429}, False),
        ({"status": "429"}, {"status": 429}, True),
        ({"status": "bogus"}, {"status": 500}, True),  # nonsense is ignored
        ({"route": "messages"}, {}, False),
        ({"route": "chat"}, {}, True),
        ({"application_id": "7"}, {}, True),
        ({"application_id": 8}, {}, False),
        ({"key_id": 70}, {}, True),
        ({"key_id": 71}, {}, False),
        ({"min_latency_ms": "100"}, {}, True),
        ({"min_latency_ms": 121}, {}, False),
        ({"min_latency_ms": "fast"}, {}, True),
        ({"user": "customer"}, {}, True),
        ({"user": "other"}, {}, False),
        ({"tag": "beta"}, {}, True),
        ({"tag": "bet"}, {}, False),  # tags match whole
        ({"model": "demo", "status": "errors"}, {"status": 502}, True),
        ({"model": "demo", "status": "errors"}, {"status": 200}, False),
        ({"status": "errors"}, {"status": None}, False),
    ],
    ids=lambda v: repr(v) if not isinstance(v, bool) else str(v),
)
def test_matches(filters, fields, expected):
    assert tail.matches(call(**fields), tail.parse_filters(filters)) is expected


def test_parse_filters_keeps_only_sensible_values():
    parsed = tail.parse_filters(
        {
            "type": "filters",
            "model": "  demo  ",
            "status": "4XX",
            "application_id": "x",
            "key_id": -3,
            "min_latency_ms": "0",
            "user": ["not", "text"],
            "tag": "t" * 1000,
        }
    )
    assert parsed == tail.Filters(model="demo", status="4xx", tag="t" * tail.TEXT_MAX)


# --- slimming ---------------------------------------------------------------------------


def test_slim_keeps_what_the_tail_shows_and_never_the_bodies():
    slim = tail.slim(row(5, "r1", guardrails={"redacted": {"EMAIL": 1}}, tags=["a"]))
    assert slim["request_id"] == "r1"
    assert slim["latency_ms"] == 12.3
    assert slim["cost"] == "0.0000200000"
    assert slim["guardrail"] == "redacted"
    assert slim["tags"] == ["a"]
    assert "body" not in slim and "attempts" not in slim and "timings" not in slim
    assert "guardrails" not in slim


@pytest.mark.parametrize(
    ("report", "flag"),
    [
        ({}, ""),
        (None, ""),
        ({"redacted": {"EMAIL": 1}}, "redacted"),
        ({"flagged": {"injection:x": 1}, "redacted": {"EMAIL": 1}}, "flagged"),
        ({"blocked": "policy:pii", "flagged": {"pii:EMAIL": 1}}, "blocked"),
    ],
)
def test_guardrail_flag_is_the_strongest_outcome(report, flag):
    assert tail.guardrail_flag(report) == flag


# --- publish ----------------------------------------------------------------------------


def _tenant_ids(n: int) -> list[int]:
    """Ids no real tenant of this run has; the channel layer and the cache outlive tests."""
    return [random.randint(10**12, 10**13) for _ in range(n)]


async def _receive(layer, channel, timeout=5.0):
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def _nothing(layer, channel, timeout=0.5) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), timeout)
    except TimeoutError:
        return True
    return False


def test_publish_sends_each_watched_tenant_its_own_calls_only():
    a, b, quiet = _tenant_ids(3)

    async def scenario():
        layer = get_channel_layer()
        to_a, to_b, to_quiet = [await layer.new_channel() for _ in range(3)]
        for tenant, channel in ((a, to_a), (b, to_b), (quiet, to_quiet)):
            await layer.group_add(tail.group_name(tenant), channel)
        await tail.mark_watched(a)
        await tail.mark_watched(b)  # quiet's group has a member, but no watcher's mark

        rows = [row(a, "a1"), row(b, "b1"), row(a, "a2"), row(quiet, "q1"), row(None, "n1")]
        await asyncio.to_thread(tail.publish, rows)

        got_a, got_b = await _receive(layer, to_a), await _receive(layer, to_b)
        assert got_a["type"] == "tail.calls"
        assert [c["request_id"] for c in got_a["calls"]] == ["a1", "a2"]
        assert [c["request_id"] for c in got_b["calls"]] == ["b1"]
        assert "body" not in got_a["calls"][0]
        assert await _nothing(layer, to_a) and await _nothing(layer, to_b)
        assert await _nothing(layer, to_quiet)

    asyncio.run(scenario())


def test_the_operators_group_gets_every_call():
    a, b = _tenant_ids(2)

    async def scenario():
        layer = get_channel_layer()
        everything = await layer.new_channel()
        await layer.group_add(tail.group_name(tail.ALL), everything)
        await tail.mark_watched(tail.ALL)
        try:
            await asyncio.to_thread(tail.publish, [row(a, "a1"), row(b, "b1"), row(None, "n")])
            got = await _receive(layer, everything)
        finally:
            await cache.adelete(tail.watch_key(tail.ALL))
            await layer.group_discard(tail.group_name(tail.ALL), everything)
        assert [c["request_id"] for c in got["calls"]] == ["a1", "b1", "n"]

    asyncio.run(scenario())


def test_publish_does_nothing_when_nobody_watches(monkeypatch):
    sent = []
    monkeypatch.setattr(tail, "_deliver", sent.append)
    tail.publish([row(t) for t in _tenant_ids(3)])
    tail.publish([])
    assert sent == []


def test_publish_never_raises(monkeypatch):
    def broken(groups):
        raise ConnectionError("redis is away")

    monkeypatch.setattr(tail, "watched", broken)
    assert tail.publish([row(1)]) is None


def test_publish_hands_in_memory_sends_to_the_consumers_loop(monkeypatch):
    """Embedded mode: the writer thread must not touch the in-memory layer's queues."""
    layer = InMemoryChannelLayer()
    monkeypatch.setattr(tail, "get_channel_layer", lambda: layer)
    (tenant,) = _tenant_ids(1)

    async def scenario():
        tail.register_loop(asyncio.get_running_loop())
        channel = await layer.new_channel()
        await layer.group_add(tail.group_name(tenant), channel)
        await tail.mark_watched(tenant)
        waiting = asyncio.ensure_future(_receive(layer, channel))
        await asyncio.sleep(0)  # the receiver waits on the queue before the send comes
        await asyncio.to_thread(tail.publish, [row(tenant, "r1")])
        got = await waiting
        assert [c["request_id"] for c in got["calls"]] == ["r1"]

    asyncio.run(scenario())


# --- the consumer -----------------------------------------------------------------------


class WebsocketCommunicator(ApplicationCommunicator):
    """channels.testing's, which can't be imported without daphne (not a dependency here)."""

    def __init__(self, application, path: str, headers=None) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or []}
        super().__init__(application, scope)

    async def connect(self, timeout: float = 5):
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept"
        return True, None

    async def send_json_to(self, data) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 5):
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 5) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


SOCKET = URLRouter([re_path(r"^ws/tail/(?P<slug>[-\w]+)/$", TailConsumer.as_asgi())])


@pytest.fixture
def w(transactional_db):
    User = get_user_model()
    alice, victor, mallory, stranger = (
        User.objects.create_user(n, f"{n}@example.com") for n in ("alice", "victor", "mallory", "x")
    )
    olga = User.objects.create_user("olga", "olga@example.com", is_staff=True)
    a = services.tenant_create(actor=services.Actor(alice), name="Tenant A", slug="tail-a")
    b = services.tenant_create(actor=services.Actor(mallory), name="Tenant B", slug="tail-b")
    Membership.objects.create(user=victor, tenant=a, role=Role.VIEWER)
    yield {"alice": alice, "victor": victor, "mallory": mallory, "stranger": stranger,
           "olga": olga, "a": a, "b": b}  # fmt: skip
    # The consumers' queries ran in asgiref's worker thread; its connection must not outlive
    # the test database.
    asyncio.run(database_sync_to_async(connections.close_all)())


async def _connect(user, slug: str) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(SOCKET, f"/ws/tail/{slug}/")
    socket.scope["user"] = user
    connected, _ = await socket.connect()
    assert connected
    return socket


async def _filters(socket, **filters) -> dict:
    """Send filters; the answer also says the consumer has joined its group."""
    await socket.send_json_to({"type": "filters", **filters})
    answer = await socket.receive_json_from(timeout=5)
    assert answer["type"] == "filters"
    return answer["filters"]


async def _calls(socket, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        message = await socket.receive_json_from(timeout=5)
        assert message["type"] == "call"
        ids.append(message["call"]["request_id"])
    assert await socket.receive_nothing(timeout=0.5)
    return ids


@pytest.mark.parametrize("who", ["alice", "victor", "olga"])
def test_a_member_or_the_operator_sees_the_tenants_calls_and_no_other(w, who):
    a, b = w["a"].pk, w["b"].pk

    async def scenario():
        socket = await _connect(w[who], "tail-a")
        await _filters(socket)
        await asyncio.to_thread(tail.publish, [row(b, "b1"), row(a, "a1"), row(a, "a2")])
        assert await _calls(socket, 2) == ["a1", "a2"]
        await socket.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["mallory", "stranger", "anonymous"])
def test_anyone_else_is_refused_with_4403(w, who):
    user = AnonymousUser() if who == "anonymous" else w[who]
    a = w["a"].pk

    async def scenario():
        socket = await _connect(user, "tail-a")
        assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
        await asyncio.to_thread(tail.publish, [row(a, "a1")])
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    asyncio.run(scenario())


def test_an_unknown_tenant_is_refused_even_to_the_operator(w):
    async def scenario():
        socket = await _connect(w["olga"], "no-such-tenant")
        assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}

    asyncio.run(scenario())


def test_filters_apply_to_what_is_forwarded(w):
    a = w["a"].pk

    async def scenario():
        socket = await _connect(w["alice"], "tail-a")
        understood = await _filters(socket, status="errors", model="chat", min_latency_ms="x")
        assert understood == {**understood, "status": "errors", "model": "chat"}
        assert understood["min_latency_ms"] is None
        await asyncio.to_thread(
            tail.publish,
            [
                row(a, "ok", status=200),
                row(a, "failed", status=502, error_type="upstream_error"),
                row(
                    a,
                    "embed-failed",
                    status=500,
                    public_model="demo-embed",
                    served_model="demo-embed",
                ),  # fmt: skip
            ],
        )
        assert await _calls(socket, 1) == ["failed"]

        await _filters(socket)  # cleared: everything again
        await asyncio.to_thread(tail.publish, [row(a, "ok2"), row(a, "bad2", status=429)])
        assert await _calls(socket, 2) == ["ok2", "bad2"]
        await socket.disconnect()

    asyncio.run(scenario())


def test_the_websocket_route_uses_the_session(w, client):
    """Through the real ASGI application: origin check, session cookie, route."""
    from waystation.asgi import application

    client.force_login(w["victor"])
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    a = w["a"].pk

    async def scenario():
        headers = [(b"cookie", cookie.encode()), (b"origin", b"http://testserver")]
        socket = WebsocketCommunicator(application, "/ws/tail/tail-a/", headers=headers)
        connected, _ = await socket.connect()
        assert connected
        await _filters(socket)
        await asyncio.to_thread(tail.publish, [row(a, "a1")])
        assert await _calls(socket, 1) == ["a1"]
        await socket.disconnect()

        anonymous = WebsocketCommunicator(application, "/ws/tail/tail-a/", headers=headers[1:])
        await anonymous.connect()
        assert await anonymous.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": 4403,
        }

    asyncio.run(scenario())

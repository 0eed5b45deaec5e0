"""Two gateway processes behind nginx share every piece of state that matters: keys,
subscriptions, rate limits, budgets, the response cache, breakers, conversations and the live
tail. Each test calls both processes directly (gateway_urls) and/or nginx, with the official SDK.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest
from websockets.sync.client import connect

from billing import controls
from portal import services
from portal.services.common import SYSTEM
from tests.cluster.conftest import nginx_available, settle
from tests.fakes.control import Reply
from tests.gateway.helpers import DEMO, apply_yaml

pytestmark = pytest.mark.skipif(
    not nginx_available(), reason="nginx is not installed (make nginx installs it)"
)

HELLO = [{"role": "user", "content": "one two three"}]


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def upstream(fake, model: str, extra: str = "") -> None:
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{fake.base_url}", api_key: "{fake.api_key}"}}
        models:
          - name: chat
            price: {{input_per_mtok: 10000, output_per_mtok: 10000}}   # a cent a token
            deployments: [{{provider: oai, model: {model}}}]
            {extra}
    """)


def new_key(slug: str = "acme", **fields) -> tuple:
    tenant = services.tenant_get_or_create(slug=slug)
    issued = services.api_key_create(tenant=tenant, name="k", all_models=True, **fields)
    return tenant, issued


def test_a_revoked_key_is_refused_by_every_process_within_a_second(cl):
    apply_yaml(DEMO)
    _, issued = new_key()
    settle()
    clients = [sdk(url, issued.secret) for url in [*cl.gateway_urls, cl.url]]
    for client in clients:
        assert client.chat.completions.create(model="demo-chat", messages=HELLO).choices

    services.api_key_revoke(api_key=issued.api_key)
    time.sleep(1.0)

    for client in clients:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="demo-chat", messages=HELLO)


def test_an_approved_subscription_opens_every_process_within_a_second(cl):
    apply_yaml(DEMO)
    tenant = services.tenant_get_or_create(slug="acme")
    app = services.application_create(actor=SYSTEM, tenant=tenant, name="bot")
    product = services.product_create(
        actor=SYSTEM,
        owner=None,
        name="Demo chat",
        models=["demo-chat"],
        status="published",
        approval_required=True,
    )
    secret = services.api_key_create(tenant=tenant, name="k", application=app).secret
    sub = services.subscription_request(actor=SYSTEM, application=app, product=product)
    settle()
    clients = [sdk(url, secret) for url in cl.gateway_urls]
    for client in clients:
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="demo-chat", messages=HELLO)

    services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    time.sleep(1.0)

    for client in clients:
        assert client.chat.completions.create(model="demo-chat", messages=HELLO).choices


def test_a_rate_limit_counts_the_calls_of_every_process(cl):
    apply_yaml(DEMO)
    tenant, issued = new_key()
    controls.rate_limit_set(
        actor=SYSTEM, tenant=tenant, api_key=issued.api_key, requests_per_minute=3
    )
    settle()
    clients = [sdk(url, issued.secret) for url in cl.gateway_urls]

    outcomes = []
    for n in range(6):
        try:
            clients[n % 2].chat.completions.create(model="demo-chat", messages=HELLO)
            outcomes.append((n % 2, 200))
        except openai.RateLimitError as refused:
            assert refused.code == "rate_limit_exceeded"
            outcomes.append((n % 2, 429))

    assert outcomes == [(0, 200), (1, 200), (0, 200), (1, 429), (0, 429), (1, 429)]
    with pytest.raises(openai.RateLimitError):
        sdk(cl.url, issued.secret).chat.completions.create(model="demo-chat", messages=HELLO)


def test_a_budget_spent_through_one_process_blocks_the_other(cl, openai_fake):
    upstream(openai_fake, "gpt-budget")
    tenant = services.tenant_get_or_create(slug="acme")
    app = services.application_create(actor=SYSTEM, tenant=tenant, name="web")
    secret = services.api_key_create(tenant=tenant, name="k", all_models=True, application=app)
    controls.budget_set(actor=SYSTEM, tenant=tenant, application=app, amount_usd=Decimal("0.5"))
    settle()
    first, second = (sdk(url, secret.secret) for url in cl.gateway_urls)

    statuses = []
    for _ in range(10):
        try:
            first.chat.completions.create(model="chat", messages=HELLO, max_tokens=20)
            statuses.append(200)
        except openai.RateLimitError as refused:
            statuses.append(refused.code)
            break
        time.sleep(0.2)  # the process settles the call's real cost
    assert statuses[-1] == "budget_exceeded" and 200 in statuses
    sent = len(openai_fake.requests)

    with pytest.raises(openai.RateLimitError) as refused:
        second.chat.completions.create(model="chat", messages=HELLO, max_tokens=20)
    assert refused.value.code == "budget_exceeded"
    assert "monthly budget of application 'web' ($0.50)" in refused.value.message
    assert len(openai_fake.requests) == sent


def test_an_answer_cached_by_one_process_is_a_hit_on_the_other(cl, openai_fake):
    upstream(openai_fake, "gpt-cached")
    _, issued = new_key()
    settle()
    openai_fake.script(Reply(text="Paris is the capital."))
    answers = []
    for url in [*cl.gateway_urls, cl.url]:
        raw = sdk(url, issued.secret).chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Capital?"}], temperature=0
        )
        answers.append((raw.headers["x-waystation-cache"], raw.parse().choices[0].message.content))

    text = "Paris is the capital."
    assert answers == [("miss", text), ("hit", text), ("hit", text)]
    assert len(openai_fake.requests) == 1


def test_a_breaker_opened_through_one_process_holds_on_the_other(cl, openai_fake):
    upstream(openai_fake, "gpt-breaker", "cache: off")
    _, issued = new_key()
    settle()
    openai_fake.fault(times=3, status=500)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            sdk(cl.gateway_urls[0], issued.secret).chat.completions.create(
                model="chat", messages=HELLO
            )
    time.sleep(0.6)  # each process refreshes its copy of the open breakers every 0.25 s

    for url in [cl.gateway_urls[1], cl.url]:
        with pytest.raises(openai.APIStatusError) as cooling:
            sdk(url, issued.secret).chat.completions.create(model="chat", messages=HELLO)
        assert cooling.value.status_code == 503
    assert len(openai_fake.requests) == 3


def test_a_conversation_started_on_one_process_continues_on_the_other(cl, openai_fake):
    upstream(openai_fake, "gpt-talk", "cache: off")
    _, issued = new_key()
    settle()
    auth = {"authorization": f"Bearer {issued.secret}"}
    created = httpx.post(cl.gateway_urls[0] + "/v1/conversations", json={}, headers=auth)
    assert created.status_code == 200, created.text
    conversation = created.json()["id"]

    for n in range(4):
        sdk(cl.gateway_urls[n % 2], issued.secret).chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": f"Message number {n}."}],
            extra_body={"conversation": conversation},
        )

    items = httpx.get(f"{cl.url}/v1/conversations/{conversation}/items", headers=auth)
    texts = [i["content"][0]["text"] for i in items.json()["data"] if i["role"] == "user"]
    assert texts == [f"Message number {n}." for n in range(4)]
    last = openai_fake.requests[-1].json["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == texts


def test_the_live_tail_through_nginx_shows_a_call_made_on_another_process(cl, client):
    from django.contrib.auth import get_user_model

    apply_yaml(DEMO)
    alice = get_user_model().objects.create_user("alice", "alice@example.com")
    tenant = services.tenant_create(actor=services.Actor(alice), name="Tail", slug="tail-c")
    secret = services.api_key_create(tenant=tenant, name="k", all_models=True).secret
    client.force_login(alice)
    settle()

    headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}", "Origin": cl.url}
    tail_url = cl.url.replace("http://", "ws://") + "/ws/tail/tail-c/"
    with connect(tail_url, additional_headers=headers, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "filters"}))
        assert json.loads(socket.recv(timeout=10))["type"] == "filters"  # in the group now

        raw = sdk(cl.gateway_urls[1], secret).chat.completions.with_raw_response.create(
            model="demo-chat", messages=HELLO
        )
        # Nobody drains by hand: the cluster's beat and worker store the call, then publish it.
        message = json.loads(socket.recv(timeout=20))

    assert message["type"] == "call"
    assert message["call"]["request_id"] == raw.headers["x-request-id"]
    assert message["call"]["public_model"] == "demo-chat"

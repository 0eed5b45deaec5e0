"""Load-balancing strategies: the order deployments are tried in."""

from collections import Counter
from decimal import Decimal

import openai
import pytest

from billing.pricing import PriceEntry
from gateway import balance
from gateway.catalog import Target
from gateway.schemas import Credentials
from tests.gateway.helpers import apply_yaml, new_key


def target(name, weight=1, price=None):
    return Target(name, "openai", Credentials("http://x", None, name), weight, price)


A, B, C = target("a"), target("b"), target("c")


@pytest.fixture(autouse=True)
def fresh_stats():
    balance.in_flight.clear()
    balance.latency_ms.clear()
    balance._cursors.clear()


def test_weighted_follows_the_weights():
    heavy, light = target("heavy", weight=9), target("light", weight=1)
    firsts = Counter(
        balance.order("m", "weighted", (heavy, light))[0].provider for _ in range(2000)
    )
    assert 0.85 < firsts["heavy"] / 2000 < 0.95


def test_round_robin_rotates():
    firsts = [balance.order("m", "round_robin", (A, B, C))[0].provider for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]


def test_least_busy_prefers_fewer_in_flight():
    balance.started(A.deployment)
    balance.started(A.deployment)
    balance.started(B.deployment)
    assert [t.provider for t in balance.order("m", "least_busy", (A, B, C))] == ["c", "b", "a"]
    balance.finished(A.deployment)
    balance.finished(A.deployment)
    assert balance.order("m", "least_busy", (A, B))[0].provider == "a"


def test_lowest_latency_uses_a_moving_average_and_samples_the_unmeasured_first():
    balance.observe_latency(A.deployment, 100.0)
    balance.observe_latency(B.deployment, 50.0)
    assert [t.provider for t in balance.order("m", "lowest_latency", (A, B, C))] == ["c", "b", "a"]
    balance.observe_latency(
        B.deployment, 1000.0
    )  # one slow sample moves the average, not all the way
    assert balance.latency_ms[B.deployment] == pytest.approx(50 + 0.2 * 950)
    assert balance.order("m", "lowest_latency", (A, B))[0].provider == "a"


def test_lowest_cost_prefers_the_cheaper_price():
    cheap = target("cheap", price=PriceEntry(Decimal("0.1"), Decimal("0.4")))
    dear = target("dear", price=PriceEntry(Decimal("3"), Decimal("15")))
    assert balance.order("m", "lowest_cost", (dear, cheap))[0].provider == "cheap"


def test_round_robin_through_the_gateway(gateway, openai_fake, anthropic_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: ant, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
        models:
          - name: pair
            strategy: round_robin
            deployments: [{{provider: oai, model: gpt-4o-mini}}, {{provider: ant, model: claude-haiku-4-5}}]
    """)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    providers = [
        client.chat.completions.with_raw_response.create(
            model="pair", messages=[{"role": "user", "content": "hi"}]
        ).headers["x-waystation-provider"]
        for _ in range(4)
    ]
    assert providers in (["oai", "ant", "oai", "ant"], ["ant", "oai", "ant", "oai"])


def test_balance_inputs_are_shared_between_processes_in_one_call(gateway, settings):
    """Another process's in-flight streams and latencies steer this one's choice."""
    import asyncio
    import time

    import redis

    from gateway import shared

    if not settings.DISTRIBUTED:
        pytest.skip("sharing needs Redis")
    client = redis.Redis.from_url(settings.REDIS_URL)
    now = time.time()
    client.hset(
        shared.BALANCE_KEY,
        mapping={
            "beat|other": now,
            f"busy|other|{A.deployment}": 5,
            f"ms|other|{B.deployment}": 900.0,
            f"ms|other|{C.deployment}": 100.0,
            "beat|gone": now - 60,
            f"busy|gone|{B.deployment}": 50,
        },
    )
    balance.in_flight[B.deployment] = 1
    balance.latency_ms[B.deployment] = 100.0

    asyncio.run(shared.refresh())

    assert balance.busy(A.deployment) == 5 and balance.busy(B.deployment) == 1
    assert balance.least_busy("m", (A, B))[0] == B
    assert balance.latency(B.deployment) == 500.0  # this process 100, the other 900
    assert balance.lowest_latency("m", (B, C))[0] == C
    fields = {k.decode() for k in client.hkeys(shared.BALANCE_KEY)}
    assert f"busy|{shared.PROCESS}|{B.deployment}" in fields  # ours, published
    assert not any("gone" in f for f in fields)  # a dead process is forgotten

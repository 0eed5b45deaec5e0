"""The fault battery: every upstream failure, streamed and not, against a two-deployment model.

Each scenario asserts what the client got (an answer through failover, or an error after the
bytes it already had, never duplicated), how many upstream attempts were made, the failing
deployment's breaker, and exactly one usage event for the one client request.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import openai
import pytest

from gateway import breaker
from tests.gateway.helpers import apply_yaml, new_key

HELLO = [{"role": "user", "content": "one two three four five six"}]
ECHO = "echo: one two three four five six"


@pytest.fixture
def refused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def blackhole_port():
    """A port whose accept queue is full, so a new connection hangs in the handshake."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname())
    yield server.getsockname()[1]
    filler.close()
    server.close()


@pytest.fixture
def battery(gateway, openai_fake, anthropic_fake, refused_port, blackhole_port, settings):
    settings.GATEWAY_BREAKER_FAILURES = 3
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 1.0
    cheap = "price: {input_per_mtok: 0.1, output_per_mtok: 0.1}"
    steady = (
        "{provider: steady, model: claude-haiku-4-5, "
        "price: {input_per_mtok: 1, output_per_mtok: 5}}"
    )
    apply_yaml(f"""
        providers:
          - {{name: flaky, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
          - {{name: steady, kind: anthropic, base_url: "{anthropic_fake.base_url}", api_key: "{anthropic_fake.api_key}"}}
          - {{name: refused, kind: openai, base_url: "http://127.0.0.1:{refused_port}/v1", api_key: x}}
          - {{name: blackhole, kind: openai, base_url: "http://127.0.0.1:{blackhole_port}/v1", api_key: x}}
        models:
          - name: battered
            strategy: lowest_cost
            timeouts: {{connect: 0.3, first_token: 0.5, idle: 0.5, total: 1.5}}
            deployments:
              - {{provider: flaky, model: gpt-4o-mini, {cheap}}}
              - {steady}
          - name: battered-refused
            strategy: lowest_cost
            deployments: [{{provider: refused, model: x, {cheap}}}, {steady}]
          - name: battered-blackhole
            strategy: lowest_cost
            timeouts: {{connect: 0.3}}
            deployments: [{{provider: blackhole, model: x, {cheap}}}, {steady}]
    """)
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)


@dataclass(frozen=True)
class Scenario:
    fault: dict = field(default_factory=dict)
    model: str = "battered"
    primary: str = "flaky/gpt-4o-mini"
    outcome: str = "upstream_error"  # the failed attempt, as the usage event logs it
    # Streams only: the failure comes after bytes reached the client, so no failover.
    after_bytes: bool = False


SCENARIOS = {
    "500": Scenario({"status": 500}),
    "503": Scenario({"status": 503}, outcome="overloaded"),
    "429-retry-after": Scenario({"status": 429, "retry_after": 0.05}, outcome="rate_limit"),
    "refused": Scenario(model="battered-refused", primary="refused/x"),
    "connect-timeout": Scenario(
        model="battered-blackhole", primary="blackhole/x", outcome="upstream_timeout"
    ),
    "slow-first-byte": Scenario({"delay": 3}, outcome="upstream_timeout"),
    "reset-before-first-byte": Scenario({"close_without_response": True}),
    "reset-after-chunks": Scenario({"break_after": 3, "chunk_delay": 0.02}, after_bytes=True),
    "malformed": Scenario({"malformed_after": 3, "chunk_delay": 0.02}, after_bytes=True),
    "stall-mid-stream": Scenario({"chunk_delay": 3}, outcome="upstream_timeout", after_bytes=True),
}


def _chat(client, model: str, stream: bool) -> tuple[str, dict]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, stream=stream
    )
    parsed = raw.parse()
    if not stream:
        return parsed.choices[0].message.content, raw.headers
    return "".join(c.choices[0].delta.content or "" for c in parsed if c.choices), raw.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault(battery, openai_fake, anthropic_fake, stored_usage, name, stream):
    scenario = SCENARIOS[name]
    if scenario.fault:
        openai_fake.fault(**scenario.fault)
    fails_mid_stream = stream and scenario.after_bytes

    if fails_mid_stream:
        seen = []
        with pytest.raises(openai.APIError):
            for chunk in battery.chat.completions.create(
                model=scenario.model, messages=HELLO, stream=True
            ):
                seen.extend(c.delta.content or "" for c in chunk.choices)
        assert ECHO.startswith("".join(seen)) and seen  # a prefix, nothing repeated
        assert len(anthropic_fake.requests) == 0
    else:
        text, headers = _chat(battery, scenario.model, stream)
        assert text == ECHO
        assert headers["x-waystation-attempts"] == "2"
        assert headers["x-waystation-provider"] == "steady"
        assert len(anthropic_fake.requests) == 1

    if scenario.model == "battered":
        assert len(openai_fake.requests) == 1
    [event] = stored_usage()
    outcomes = [a["outcome"] for a in event.attempts]
    if fails_mid_stream:
        assert outcomes == ["ok"] and event.status in (502, 504)
        assert event.error_type == scenario.outcome and event.provider == "flaky"
    else:
        assert outcomes == [scenario.outcome, "ok"]
        assert (event.status, event.provider) == (200, "steady")
    health = breaker.health_report([scenario.primary])[scenario.primary]
    assert (health.state, health.recent_failures) == ("closed", 1)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_flapping_deployment_is_cut_off_then_probed_back(
    battery, openai_fake, anthropic_fake, stored_usage, stream
):
    for _ in range(3):  # fail, answer, fail, answer, fail
        openai_fake.fault(status=500)
        openai_fake.fault()
    served_by = []
    for _ in range(6):
        text, headers = _chat(battery, "battered", stream)
        assert text == ECHO
        served_by.append(headers["x-waystation-provider"])

    # Failed requests fall over to steady; the third failure opens flaky's breaker, so the
    # sixth request doesn't try flaky at all.
    assert served_by == ["steady", "flaky", "steady", "flaky", "steady", "steady"]
    assert len(openai_fake.requests) == 5
    assert breaker.health_report(["flaky/gpt-4o-mini"])["flaky/gpt-4o-mini"].state == "open"
    events = stored_usage()
    assert len(events) == 6
    assert [a["outcome"] for a in events[-1].attempts] == ["breaker_open", "ok"]


def test_a_slow_upstream_with_nowhere_to_go_is_504(gateway, openai_fake):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - name: lonely
            deployments: [{{provider: oai, model: gpt-4o-mini, timeouts: {{total: 0.3}}}}]
    """)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    openai_fake.fault(delay=2)

    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="lonely", messages=HELLO)
    assert failure.value.status_code == 504

"""Redis going away must not take the gateway down: routing state, breakers, limits and the
usage buffer all keep working on what the process has, and say so in the log."""

import openai
import pytest

from gateway import breaker, limits, shared
from gateway.breaker import Breakers, RedisStore
from tests.gateway.helpers import apply_yaml, new_key

DEAD = "redis://127.0.0.1:1/0"


def test_requests_keep_succeeding_while_redis_is_unreachable(
    gateway, openai_fake, settings, caplog
):
    if not settings.DISTRIBUTED:
        pytest.skip("embedded mode has no Redis to lose")
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - {{name: m, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
    """)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    saved_limits = limits._redis
    breaker._breakers = Breakers(RedisStore(DEAD))
    limits._redis = limits.RedisCounters(DEAD)
    shared.reset()
    try:
        openai_fake.fault(status=500)  # a failure to record, with nowhere to record it
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        for stream in (False, True, False):
            answer = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "still here"}], stream=stream
            )
            text = (
                answer.choices[0].message.content
                if not stream
                else "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
            )
            assert text == "echo: still here"
    finally:
        breaker._breakers = None
        limits._redis = saved_limits
        shared.reset()
    assert "Redis unreachable" in caplog.text

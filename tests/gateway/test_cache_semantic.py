"""The semantic cache end to end: local MiniLM embeddings, the shared index in Redis, the
guard against near-misses, eviction, and two gateway processes sharing entries."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.conf import settings

from tests.gateway.helpers import another_gateway, apply_yaml, new_key

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: chat
        deployments: [{{provider: oai, model: gpt-up}}]
        cache: {{mode: semantic{extra}}}
      - name: embed
        mode: embedding
        deployments: [{{provider: oai, model: text-embedding-3-small}}]
"""


def configure(fake, extra: str = "") -> None:
    from gateway import catalog

    apply_yaml(CONFIG.format(url=fake.base_url, key=fake.api_key, extra=extra))
    catalog.invalidate()


def ask(
    base_url: str,
    key: str,
    text: str,
    system: str = "You answer support questions.",
    headers: dict | None = None,
    name: str | None = None,
):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    user = {"role": "user", "content": text} | ({"name": name} if name else {})
    raw = client.chat.completions.with_raw_response.create(
        model="chat",
        temperature=0,
        messages=[{"role": "system", "content": system}, user],
        extra_headers=headers or {},
    )
    return raw.headers, raw.parse().choices[0].message.content


@pytest.fixture
def key(gateway, openai_fake) -> str:
    configure(openai_fake)
    return new_key()


def chats(fake) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def test_a_paraphrase_is_answered_from_the_cache(gateway, openai_fake, key):
    _, first = ask(gateway.base_url, key, "How do I reset my password?")
    headers, second = ask(gateway.base_url, key, "how can I reset my password")

    assert headers["x-waystation-cache"] == "semantic-hit"
    assert float(headers["x-waystation-cache-similarity"]) >= 0.8
    assert second == first == "echo: How do I reset my password?"
    assert chats(openai_fake) == 1


def test_near_misses_and_other_contexts_go_upstream(gateway, openai_fake, key):
    ask(gateway.base_url, key, "Convert 5 km to miles")
    assert ask(gateway.base_url, key, "Convert 7 km to miles")[0]["x-waystation-cache"] == "miss"
    ask(gateway.base_url, key, "Is the store open on Sunday?")
    negated = ask(gateway.base_url, key, "Is the store not open on Sunday?")
    assert negated[0]["x-waystation-cache"] == "miss"
    other_system = ask(gateway.base_url, key, "Convert 5 km to miles", system="Answer in French.")
    assert other_system[0]["x-waystation-cache"] == "miss"
    assert chats(openai_fake) == 5


def test_a_threshold_directive_tightens_the_match(gateway, openai_fake, key):
    ask(gateway.base_url, key, "How do I reset my password?")
    strict = {"x-waystation-cache": "threshold=0.999"}
    headers, _ = ask(gateway.base_url, key, "how can I reset my password", headers=strict)
    assert headers["x-waystation-cache"] == "miss"
    assert chats(openai_fake) == 2


def test_the_exact_cache_answers_first(gateway, openai_fake, key):
    ask(gateway.base_url, key, "How do I reset my password?")
    headers, _ = ask(gateway.base_url, key, "How do I reset my password?")
    assert headers["x-waystation-cache"] == "hit"
    assert "x-waystation-cache-similarity" not in headers


def test_a_partition_keeps_at_most_max_entries(gateway, openai_fake):
    import redis

    configure(openai_fake, ", max_entries: 2")
    key = new_key()
    for question in ("Where is my order?", "How do I change my email?", "Can I pay by card?"):
        ask(gateway.base_url, key, question)

    client = redis.Redis.from_url(settings.REDIS_URL)
    logs = client.keys(f"{settings.GATEWAY_CACHE_KEY_PREFIX}:*:l:*")
    entries = client.keys(f"{settings.GATEWAY_CACHE_KEY_PREFIX}:*:e:*")
    assert [client.xlen(log) for log in logs] == [2]
    assert len(entries) == 2
    # The oldest went, its entry with it: its paraphrase goes upstream; a newer one's doesn't.
    assert ask(gateway.base_url, key, "where's my order")[0]["x-waystation-cache"] == "miss"
    assert ask(gateway.base_url, key, "can I pay with a card?")[0]["x-waystation-cache"] == (
        "semantic-hit"
    )


def test_any_embeddings_model_of_the_gateway_can_embed_instead(gateway, openai_fake):
    configure(openai_fake, ", embedding_model: embed")
    key = new_key()
    ask(gateway.base_url, key, "What are your opening hours?")
    # Another message name: not the same request, but the same cache text and context.
    headers, _ = ask(gateway.base_url, key, "What are your opening hours?", name="alice")

    assert headers["x-waystation-cache"] == "semantic-hit"
    embedded = [r.json["input"] for r in openai_fake.requests if r.path.endswith("/embeddings")]
    assert embedded[0] in ("What are your opening hours?", ["What are your opening hours?"])
    assert chats(openai_fake) == 1


def test_two_gateway_processes_share_the_cache(gateway, openai_fake, key):
    prefix = {"GATEWAY_CACHE_KEY_PREFIX": settings.GATEWAY_CACHE_KEY_PREFIX}
    ask(gateway.base_url, key, "How do I reset my password?")
    with another_gateway(**prefix) as other:
        exact = ask(other, key, "How do I reset my password?")
        semantic = ask(other, key, "how can I reset my password")
        ask(other, key, "Do you ship to Canada?")  # stored by the other process
        headers = httpx.get(other + "/healthz").headers  # it is up and serving
    mine = ask(gateway.base_url, key, "Do you ship to Canada")

    assert headers is not None
    assert exact[0]["x-waystation-cache"] == "hit"
    assert semantic[0]["x-waystation-cache"] == "semantic-hit"
    assert mine[0]["x-waystation-cache"] == "semantic-hit"
    assert mine[1] == "echo: Do you ship to Canada?"
    assert chats(openai_fake) == 2

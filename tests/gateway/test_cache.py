"""The response cache through the real gateway: exact and semantic hits, stream replay, the
controls, tenant isolation and accounting. Upstreams are the provider fakes."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from portal import services
from tests.fakes.control import Reply, ToolCallSpec
from tests.gateway.helpers import apply_yaml, new_key

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - name: chat
        price: {{input_per_mtok: 1000, output_per_mtok: 2000}}
        deployments: [{{provider: oai, model: gpt-up}}]
        {cache}
"""


def configure(fake, cache: str = "") -> None:
    from gateway import catalog

    apply_yaml(CONFIG.format(url=fake.base_url, key=fake.api_key, cache=cache))
    catalog.invalidate()  # this test's policy now, not at the next refresh


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, text: str, headers: dict | None = None, **params):
    params.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        extra_headers=headers or {},
        **params,
    )
    return raw.headers, raw.parse()


@pytest.fixture
def key(gateway, openai_fake) -> str:
    configure(openai_fake)
    return new_key()


def test_a_repeated_deterministic_request_is_answered_from_the_cache(gateway, openai_fake, key):
    client = sdk(gateway, key)
    openai_fake.script(Reply(text="Paris is the capital."))
    first_headers, first = ask(client, "Capital of France?")
    second_headers, second = ask(client, "Capital of France?")

    assert first_headers["x-waystation-cache"] == "miss"
    assert second_headers["x-waystation-cache"] == "hit"
    assert second_headers["x-waystation-provider"] == "cache"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.choices[0].message.content == "Paris is the capital."
    assert second.id != first.id
    assert len(openai_fake.requests) == 1


def test_what_changes_the_answer_changes_the_key(gateway, openai_fake, key):
    client = sdk(gateway, key)
    ask(client, "Capital of France?")
    assert ask(client, "Capital of France?", max_tokens=5)[0]["x-waystation-cache"] == "miss"
    assert ask(client, "Capital of Spain?")[0]["x-waystation-cache"] == "miss"
    assert ask(client, "Capital of France?", seed=3)[0]["x-waystation-cache"] == "miss"
    # What doesn't change it: the end user's id and metadata.
    assert ask(client, "Capital of France?", user="u-9")[0]["x-waystation-cache"] == "hit"
    assert len(openai_fake.requests) == 4


def test_by_default_only_temperature_zero_or_an_opt_in_is_cached(gateway, openai_fake, key):
    client = sdk(gateway, key)
    for _ in range(2):
        headers, _ = ask(client, "Tell a joke", temperature=0.9)
        assert headers["x-waystation-cache"] == "bypass"
    assert len(openai_fake.requests) == 2

    ask(client, "Tell a joke", headers={"x-waystation-cache": "on"}, temperature=0.9)
    headers, _ = ask(client, "Tell a joke", headers={"x-waystation-cache": "on"}, temperature=0.9)
    assert headers["x-waystation-cache"] == "hit"
    assert len(openai_fake.requests) == 3


def test_no_cache_skips_the_lookup_and_no_store_skips_the_save(gateway, openai_fake, key):
    client = sdk(gateway, key)
    assert ask(client, "Q1", {"x-waystation-cache": "no-store"})[0]["x-waystation-cache"] == "miss"
    assert ask(client, "Q1")[0]["x-waystation-cache"] == "miss"  # the first wasn't kept
    assert (
        ask(client, "Q1", {"x-waystation-cache": "no-cache"})[0]["x-waystation-cache"] == "bypass"
    )
    assert ask(client, "Q1")[0]["x-waystation-cache"] == "hit"
    assert len(openai_fake.requests) == 3


def test_a_ttl_directive_bounds_the_entry_life(gateway, openai_fake, key):
    import time

    client = sdk(gateway, key)
    ask(client, "Q2", {"x-waystation-cache": "ttl=1"})
    assert ask(client, "Q2")[0]["x-waystation-cache"] == "hit"
    time.sleep(1.2)
    assert ask(client, "Q2")[0]["x-waystation-cache"] == "miss"


@pytest.mark.parametrize(
    "directive", ["sometimes", "ttl=0", "ttl=abc", "threshold=1.5", "threshold=0", "ttl=-3"]
)
def test_a_bad_directive_is_a_400_in_each_routes_format(gateway, openai_fake, key, directive):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk(gateway, key), "Q", {"x-waystation-cache": directive})
    assert "x-waystation-cache" in caught.value.message
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="chat",
            max_tokens=20,
            messages=[{"role": "user", "content": "Q"}],
            extra_headers={"x-waystation-cache": directive},
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert openai_fake.requests == []


def test_a_stream_is_stored_and_replayed_with_the_same_framing(gateway, openai_fake, key):
    client = sdk(gateway, key)
    openai_fake.script(Reply(text="one two three four five six seven eight nine ten"))

    def stream() -> tuple[str, list, object]:
        with client.chat.completions.with_streaming_response.create(
            model="chat",
            temperature=0,
            messages=[{"role": "user", "content": "count to ten"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as raw:
            chunks = list(raw.parse())
            return raw.headers["x-waystation-cache"], chunks, raw.headers

    live_status, live, _ = stream()
    replay_status, replay, _ = stream()

    text = "".join(c.choices[0].delta.content or "" for c in replay if c.choices)
    assert (live_status, replay_status) == ("miss", "hit")
    assert text == "one two three four five six seven eight nine ten"
    assert [c.choices[0].finish_reason for c in replay if c.choices][-1] == "stop"
    assert replay[-1].usage.completion_tokens == live[-1].usage.completion_tokens
    assert len(openai_fake.requests) == 1
    # One entry serves either form: the streamed answer answers a plain request too.
    raw = client.chat.completions.with_raw_response.create(
        model="chat", temperature=0, messages=[{"role": "user", "content": "count to ten"}]
    )
    assert raw.headers["x-waystation-cache"] == "hit"
    assert raw.parse().choices[0].message.content == text


def test_tool_calls_replay_through_the_anthropic_route(gateway, openai_fake, key):
    openai_fake.script(Reply(tool_calls=[ToolCallSpec("get_weather", '{"city": "Paris"}')]))
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    request = {
        "model": "chat",
        "max_tokens": 50,
        "extra_headers": {"x-waystation-cache": "on"},  # opts in, whatever the temperature
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    first = claude.messages.create(**request)
    with claude.messages.stream(**request) as stream:
        events = list(stream)
        replayed = stream.get_final_message()

    assert any(e.type == "content_block_start" for e in events)
    assert first.stop_reason == replayed.stop_reason == "tool_use"
    [call] = [b for b in replayed.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    assert len(openai_fake.requests) == 1


def test_entries_never_cross_tenants_and_may_be_scoped_per_key_or_user(gateway, openai_fake):
    configure(openai_fake)
    ask(sdk(gateway, new_key(tenant="acme")), "Shared question")
    assert (
        ask(sdk(gateway, new_key(tenant="globex")), "Shared question")[0]["x-waystation-cache"]
        == "miss"
    )
    assert (
        ask(sdk(gateway, new_key(tenant="acme")), "Shared question")[0]["x-waystation-cache"]
        == "hit"
    )  # another key of the same tenant

    configure(openai_fake, "cache: {mode: exact, scope: user}")
    acme = sdk(gateway, new_key(tenant="acme"))
    ask(acme, "Per user", user="alice")
    assert ask(acme, "Per user", user="bob")[0]["x-waystation-cache"] == "miss"
    assert ask(acme, "Per user", user="alice")[0]["x-waystation-cache"] == "hit"

    configure(openai_fake, "cache: {mode: exact, scope: key}")
    ask(sdk(gateway, (first := new_key(tenant="acme"))), "Per key")
    assert ask(sdk(gateway, new_key(tenant="acme")), "Per key")[0]["x-waystation-cache"] == "miss"
    assert ask(sdk(gateway, first), "Per key")[0]["x-waystation-cache"] == "hit"


def test_a_model_policy_can_turn_the_cache_off(gateway, openai_fake):
    configure(openai_fake, "cache: off")
    client = sdk(gateway, new_key())
    ask(client, "Q")
    headers, _ = ask(client, "Q")
    assert "x-waystation-cache" not in headers
    assert len(openai_fake.requests) == 2


def test_a_products_policy_wins_for_its_subscribers(gateway, openai_fake):
    from gateway.models import CachePolicy, LanguageModel
    from portal.models import Product, Subscription

    configure(openai_fake, "cache: off")
    tenant = services.tenant_get_or_create(slug="acme")
    product = Product.objects.create(slug="faq", name="FAQ", status=Product.Status.PUBLISHED)
    product.language_models.add(LanguageModel.objects.get(name="chat"))
    CachePolicy.objects.create(product=product, mode="exact", cacheable="always")
    app = services.application_create(actor=services.SYSTEM, tenant=tenant, name="bot")
    Subscription.objects.create(application=app, product=product, status="active")
    subscriber = services.api_key_create(tenant=tenant, name="k", application=app).secret

    subscribed = sdk(gateway, subscriber)
    ask(subscribed, "Q", temperature=1)  # `always`: even a sampled answer is kept
    assert ask(subscribed, "Q", temperature=1)[0]["x-waystation-cache"] == "hit"
    assert "x-waystation-cache" not in ask(sdk(gateway, new_key()), "Q")[0]  # the model's: off


@pytest.mark.django_db(transaction=True)
def test_a_hit_costs_nothing_upstream_and_records_what_it_saved(
    gateway, openai_fake, key, stored_usage
):
    client = sdk(gateway, key)
    openai_fake.script(Reply(text="a b c", input_tokens=100, output_tokens=50))
    ask(client, "Costly?")
    ask(client, "Costly?")

    miss, hit = stored_usage()
    assert (miss.cache, hit.cache) == ("miss", "hit")
    assert miss.cost == Decimal("0.2")  # 100 x $1000/M + 50 x $2000/M
    assert hit.cost == 0 and hit.cache_saved == miss.cost
    assert (hit.input_tokens, hit.output_tokens, hit.provider) == (0, 0, "cache")


@pytest.mark.django_db(transaction=True)
def test_a_configured_hit_price_is_what_a_hit_costs(gateway, openai_fake, stored_usage):
    configure(openai_fake, "cache: {mode: exact, hit_price: 0.001}")
    client = sdk(gateway, new_key())
    ask(client, "Q")
    headers, _ = ask(client, "Q")
    assert Decimal(headers["x-waystation-cost"]) == Decimal("0.001")
    assert stored_usage()[-1].cost == Decimal("0.001")


def test_a_store_that_is_away_turns_lookups_into_misses(gateway, openai_fake, key):
    from gateway.cache import service
    from gateway.cache.store import RedisCacheStore

    service._store = RedisCacheStore("redis://127.0.0.1:1/0")  # nothing listens there
    client = sdk(gateway, key)
    for _ in range(2):
        headers, answer = ask(client, "Still served?")
        assert headers["x-waystation-cache"] == "miss"
        assert answer.choices[0].message.content == "echo: Still served?"
    assert len(openai_fake.requests) == 2


def test_responses_cut_short_are_not_kept(gateway, openai_fake, key):
    openai_fake.script(Reply(text="partial", finish_reason="content_filter"))
    client = sdk(gateway, key)
    ask(client, "Filtered?")
    assert ask(client, "Filtered?")[0]["x-waystation-cache"] == "miss"
    assert len(openai_fake.requests) == 2


def test_an_error_is_never_cached(gateway, openai_fake, key):
    openai_fake.fault(times=1, status=400, message="bad thing")
    client = sdk(gateway, key)
    with pytest.raises(openai.BadRequestError):
        ask(client, "Q")
    assert ask(client, "Q")[0]["x-waystation-cache"] == "miss"


def test_images_are_part_of_the_key(gateway, openai_fake, key):
    def with_image(url: str) -> httpx.Response:
        content = [
            {"type": "text", "text": "what is it"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return httpx.post(
            gateway.base_url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={
                "model": "chat",
                "temperature": 0,
                "messages": [{"role": "user", "content": content}],
            },
        )

    assert with_image("https://x.test/a.png").headers["x-waystation-cache"] == "miss"
    assert with_image("https://x.test/b.png").headers["x-waystation-cache"] == "miss"
    assert with_image("https://x.test/a.png").headers["x-waystation-cache"] == "hit"

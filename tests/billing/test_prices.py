"""The price catalog: exact Decimal costs, effective dates, the seeded list prices, YAML prices
and the order in which the gateway looks a deployment's price up."""

import io
import textwrap
from decimal import Decimal

import openai
import pytest
from django.core.management import call_command

from billing import prices
from billing.models import Price
from billing.pricing import PriceEntry, cost_of
from gateway import catalog, config
from gateway.schemas import Usage
from portal.models import AuditEvent
from portal.services import SYSTEM, Actor, ServiceError
from tests.fakes.control import Reply
from tests.gateway.helpers import apply_yaml, new_key

D = Decimal

# --- cost_of -----------------------------------------------------------------------------


def test_cost_bills_each_kind_of_token_at_its_own_price_exactly():
    price = PriceEntry(
        input_per_mtok=D("1.25"),
        output_per_mtok=D("10"),
        cached_input_per_mtok=D("0.125"),
        reasoning_per_mtok=D("12.5"),
        per_request_usd=D("0.002"),
    )
    usage = Usage(
        input_tokens=10_000, output_tokens=3_000, cached_input_tokens=4_000, reasoning_tokens=1_000
    )

    cost = cost_of(usage, price)

    # 6000 x 1.25 + 4000 x 0.125 + (3000 - 1000) x 10 + 1000 x 12.5 = 40500 per million, + fee
    assert isinstance(cost, Decimal)
    assert cost == D("0.0425")


def test_reasoning_without_its_own_price_is_billed_as_output_and_counted_once():
    price = PriceEntry(D("2"), D("8"))
    with_reasoning = Usage(input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_000)

    assert cost_of(with_reasoning, price) == D("0.042")  # (1000 x 2 + 5000 x 8) / 10^6
    assert cost_of(with_reasoning, price) == cost_of(Usage(1_000, 5_000), price)


def test_costs_are_exact_where_floats_would_not_be():
    price = PriceEntry(D("0.1"), D("0.2"), per_request_usd=D("0.000001"))
    cost = cost_of(Usage(input_tokens=3, output_tokens=1), price)

    assert cost == D("0.0000015")  # 0.5 per million, + the fee
    assert str(cost) == "0.0000015"


def test_unknown_tokens_or_price_cost_nothing_known():
    assert cost_of(Usage(input_tokens=None, output_tokens=5), PriceEntry(D(1), D(1))) is None
    assert cost_of(Usage(input_tokens=5, output_tokens=None), PriceEntry(D(1), D(1))) is None
    assert cost_of(Usage(5, 5), None) is None


def test_a_per_request_fee_is_billed_even_for_zero_tokens():
    assert cost_of(Usage(0, 0), PriceEntry(D(1), D(1), per_request_usd=D("0.01"))) == D("0.01")


# --- seeding -------------------------------------------------------------------------------

SEED = """
taken: 2026-11-28
providers:
  openai:
    source: https://platform.openai.com/docs/pricing
    models:
      gpt-4o-mini: {input_per_mtok: 0.15, cached_input_per_mtok: 0.075, output_per_mtok: 0.60}
      gpt-4.1-nano: {input_per_mtok: 0.10, cached_input_per_mtok: 0.025, output_per_mtok: 0.40}
"""


def seed_file(tmp_path, text=SEED):
    path = tmp_path / "prices.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.django_db
def test_the_shipped_table_loads_whole_with_sources_and_exact_figures():
    added = prices.seed_prices()

    assert len(added) >= 25
    for name in ("gpt-4.1", "o4-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-chat"):
        assert name in added
    nano = Price.objects.get(model_name="gpt-4.1-nano")
    assert nano.cached_input_per_mtok == D("0.025") and nano.output_per_mtok == D("0.4")
    assert nano.source.startswith("list price 2026-11-28: https://platform.openai.com/")
    assert all(
        p.source.startswith("list price ") and "https://" in p.source for p in Price.objects.all()
    )


@pytest.mark.django_db
def test_seeding_is_idempotent_and_a_change_adds_a_row(tmp_path):
    path = seed_file(tmp_path)
    assert sorted(prices.seed_prices(path)) == ["gpt-4.1-nano", "gpt-4o-mini"]
    assert prices.seed_prices(path) == []
    assert Price.objects.count() == 2

    out = io.StringIO()
    call_command("seed_prices", "--file", str(path), stdout=out)
    assert out.getvalue().strip().endswith("no new price(s)")

    changed = seed_file(tmp_path, SEED.replace("output_per_mtok: 0.60", "output_per_mtok: 0.70"))
    assert prices.seed_prices(changed) == ["gpt-4o-mini"]
    history = Price.objects.filter(model_name="gpt-4o-mini").order_by("effective_from")
    assert [p.output_per_mtok for p in history] == [D("0.6"), D("0.7")]
    assert AuditEvent.objects.filter(action="price.seeded").count() == 3


@pytest.mark.django_db
def test_the_seed_never_replaces_an_operators_price_unless_forced(tmp_path, django_user_model):
    operator = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    prices.seed_prices(seed_file(tmp_path))
    prices.price_set(
        actor=Actor(operator),
        model_name="gpt-4o-mini",
        input_per_mtok="0.10",
        output_per_mtok="0.50",
        source="our contract",
    )
    changed = seed_file(tmp_path, SEED.replace("output_per_mtok: 0.60", "output_per_mtok: 0.70"))

    assert prices.seed_prices(changed) == []
    assert prices.latest_price("gpt-4o-mini").source == "our contract"
    assert prices.seed_prices(changed, force=True) == ["gpt-4o-mini"]
    assert prices.latest_price("gpt-4o-mini").output_per_mtok == D("0.7")


# --- effective dates ------------------------------------------------------------------------


def chat_yaml(fake, price="{input_per_mtok: 1, output_per_mtok: 2}"):
    return f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{fake.base_url}", api_key: "{fake.api_key}"}}
        models:
          - name: chat
            price: {price}
            deployments: [{{provider: oai, model: gpt-4o-mini}}]
    """


def test_a_price_change_bills_later_calls_and_leaves_earlier_costs_alone(
    gateway, openai_fake, stored_usage, django_user_model
):
    apply_yaml(
        chat_yaml(openai_fake, "{input_per_mtok: 1, output_per_mtok: 2, per_request_usd: 0.001}")
    )
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    openai_fake.script(
        Reply(text="one", input_tokens=1_000, output_tokens=500),
        Reply(text="two", input_tokens=1_000, output_tokens=500),
    )
    first = api.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    [before] = stored_usage()
    assert before.cost == D("0.003")  # (1000 x 1 + 500 x 2) / 10^6 + 0.001
    assert D(first.headers["x-waystation-cost"]) == D("0.003")
    assert before.reasoning_tokens == 0  # OpenAI's completion_tokens_details, recorded

    operator = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    prices.price_set(
        actor=Actor(operator), model_name="chat", input_per_mtok="3", output_per_mtok="4"
    )
    catalog.invalidate()
    api.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    earlier, later = stored_usage()
    assert earlier.request_id == before.request_id
    assert earlier.cost == D("0.003")  # unchanged
    assert later.cost == D("0.005")  # (1000 x 3 + 500 x 4) / 10^6, no fee any more
    assert Price.objects.filter(model_name="chat").count() == 2  # the old row is kept as it was
    assert Price.objects.filter(model_name="chat", input_per_mtok=1).exists()


@pytest.mark.django_db
def test_a_scheduled_price_waits_for_its_date(django_user_model):
    from datetime import timedelta

    from django.utils import timezone

    operator = Actor(django_user_model.objects.create_user("op", "o@e.com", "pw", is_staff=True))
    prices.price_set(actor=operator, model_name="m", input_per_mtok=1, output_per_mtok=1)
    soon = timezone.now() + timedelta(days=3)
    prices.price_set(
        actor=operator, model_name="m", input_per_mtok=2, output_per_mtok=2, effective_from=soon
    )

    [row] = prices.current_prices()
    assert row.current.input_per_mtok == 1 and row.scheduled.input_per_mtok == 2
    assert row.history == 2
    [later] = prices.current_prices(at=soon + timedelta(seconds=1))
    assert later.current.input_per_mtok == 2 and later.scheduled is None

    with pytest.raises(ServiceError, match="now or later"):
        prices.price_set(
            actor=operator,
            model_name="m",
            input_per_mtok=1,
            output_per_mtok=1,
            effective_from=timezone.now() - timedelta(days=1),
        )


@pytest.mark.django_db
def test_only_the_operator_sets_prices(django_user_model):
    from portal.access import Denied

    developer = django_user_model.objects.create_user("dev", "d@e.com", "pw")
    with pytest.raises(Denied):
        prices.price_set(
            actor=Actor(developer), model_name="m", input_per_mtok=1, output_per_mtok=1
        )
    with pytest.raises(ServiceError, match="input_per_mtok"):
        prices.price_set(actor=SYSTEM, model_name="m", input_per_mtok=-1, output_per_mtok=1)
    assert not Price.objects.exists()


# --- YAML ------------------------------------------------------------------------------------

YAML = """
providers:
  - {name: oai, kind: openai, base_url: "https://api.openai.com/v1", api_key: "sk-test"}
models:
  - name: thinker
    price: {input_per_mtok: 2, output_per_mtok: 8, reasoning_per_mtok: 9.5, per_request_usd: 0.0125}
    deployments:
      - {provider: oai, model: o3}
      - {provider: oai, model: o4-mini, price: {input_per_mtok: 1.1, output_per_mtok: 4.4, per_request_usd: 0.001}}
"""


@pytest.mark.django_db
def test_yaml_prices_carry_reasoning_and_per_request_fees():
    apply_yaml(YAML)

    model = Price.objects.get(model_name="thinker")
    assert (model.reasoning_per_mtok, model.per_request_usd) == (D("9.5"), D("0.0125"))
    assert model.source == "config"
    dep = Price.objects.get(model_name="oai/o4-mini")
    assert (dep.reasoning_per_mtok, dep.per_request_usd) == (None, D("0.001"))

    targets = {
        t.credentials.upstream_model: t.price for t in catalog.load().models["thinker"].targets
    }
    assert targets["o3"] == PriceEntry(D(2), D(8), None, D("9.5"), D("0.0125"))
    assert targets["o4-mini"] == PriceEntry(D("1.1"), D("4.4"), None, None, D("0.001"))


@pytest.mark.django_db
def test_a_change_in_any_yaml_price_field_adds_a_row_and_nothing_else_does():
    apply_yaml(YAML)
    apply_yaml(YAML)
    assert Price.objects.count() == 2

    apply_yaml(YAML.replace("per_request_usd: 0.0125", "per_request_usd: 0.015"))
    apply_yaml(YAML.replace("reasoning_per_mtok: 9.5", "reasoning_per_mtok: 9.6"))
    fees = Price.objects.filter(model_name="thinker").order_by("effective_from")
    assert [(p.per_request_usd, p.reasoning_per_mtok) for p in fees] == [
        (D("0.0125"), D("9.5")),
        (D("0.015"), D("9.5")),
        (D("0.0125"), D("9.6")),
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("per_request_usd: -1", "line 6: price 'per_request_usd' must be a number >= 0"),
        ("reasoning_per_mtok: 0.0000001", "line 6: price 'reasoning_per_mtok' must be a number"),
        ("reasoning: 1", "line 6: unknown price field(s): reasoning"),
    ],
)
def test_bad_yaml_prices_are_reported_with_their_line(bad, message):
    text = YAML.replace("per_request_usd: 0.0125", bad)
    with pytest.raises(config.ConfigError) as err:
        config.parse(text)
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


# --- the catalog's lookup order ----------------------------------------------------------


@pytest.mark.django_db
def test_a_deployment_is_billed_at_its_own_then_its_models_then_the_list_price(tmp_path):
    prices.seed_prices(seed_file(tmp_path))  # list prices of gpt-4o-mini and gpt-4.1-nano
    apply_yaml("""
        providers:
          - {name: oai, kind: openai, base_url: "https://api.openai.com/v1", api_key: "sk-test"}
          - {name: oai2, kind: openai, base_url: "https://api.openai.com/v1", api_key: "sk-test"}
        models:
          - name: own
            price: {input_per_mtok: 5, output_per_mtok: 5}
            deployments:
              - {provider: oai, model: gpt-4o-mini, price: {input_per_mtok: 7, output_per_mtok: 7}}
          - name: modelled
            price: {input_per_mtok: 5, output_per_mtok: 5}
            deployments: [{provider: oai2, model: gpt-4o-mini}]
          - name: listed
            deployments: [{provider: oai, model: gpt-4.1-nano}]
          - name: unpriced
            deployments: [{provider: oai, model: my-finetune}]
    """)
    models = catalog.load().models

    def price(name):
        [target] = models[name].targets
        return target.price

    assert price("own").input_per_mtok == 7  # oai/gpt-4o-mini's own, over 5 and the list 0.15
    assert price("modelled").input_per_mtok == 5  # the model's, over the list price
    assert price("listed") == PriceEntry(D("0.10"), D("0.40"), D("0.025"))
    assert price("unpriced") is None

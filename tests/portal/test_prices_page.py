"""The operator's price page: staff only, the price in force per name, adding prices."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from billing import prices
from billing.models import Price
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

PRICE = {
    "model_name": "oai/gpt-4o-mini",
    "input_per_mtok": "0.165",
    "output_per_mtok": "0.66",
    "cached_input_per_mtok": "",
    "reasoning_per_mtok": "",
    "per_request_usd": "0.0005",
    "source": "https://example.com/our-contract",
    "effective_from": "",
}


@pytest.fixture
def operator_client(client):
    operator = get_user_model().objects.create_user("op", "op@example.com", "pw", is_staff=True)
    client.force_login(operator)
    return client


@pytest.fixture
def developer_client(client):
    developer = get_user_model().objects.create_user("dev", "dev@example.com", "pw")
    client.force_login(developer)
    return client


def test_non_operators_get_403_and_change_nothing(developer_client):
    assert developer_client.get(reverse("portal:prices")).status_code == 403
    assert developer_client.post(reverse("portal:price_add"), PRICE).status_code == 403
    assert not Price.objects.exists()
    home = developer_client.get(reverse("portal:dashboard"), follow=True).content.decode()
    assert "Routing</a>" not in home and "Prices</a>" not in home


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("portal:prices"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_page_shows_the_price_in_force_its_source_and_history(operator_client):
    prices.seed_prices()
    page = operator_client.get(reverse("portal:prices")).content.decode()

    assert "<code>claude-haiku-4-5</code>" in page
    assert "https://docs.claude.com/en/docs/about-claude/pricing" in page
    assert "1 row" in page
    assert 'aria-current="page">Prices</a>' in page


def test_the_operator_adds_a_price_and_it_is_audited(operator_client):
    response = operator_client.post(reverse("portal:price_add"), PRICE)

    assert response.status_code == 302 and response["Location"] == reverse("portal:prices")
    price = Price.objects.get(model_name="oai/gpt-4o-mini")
    assert (price.input_per_mtok, price.output_per_mtok) == (Decimal("0.165"), Decimal("0.66"))
    assert price.cached_input_per_mtok is None and price.reasoning_per_mtok is None
    assert price.per_request_usd == Decimal("0.0005")
    assert price.source == "https://example.com/our-contract"
    assert abs(price.effective_from - timezone.now()) < timedelta(seconds=30)

    event = AuditEvent.objects.get(action="price.set")
    assert event.actor.username == "op" and event.tenant is None
    assert event.data["model"] == "oai/gpt-4o-mini"
    assert Decimal(event.data["input_per_mtok"]) == Decimal("0.165")
    assert Decimal(event.data["per_request_usd"]) == Decimal("0.0005")
    assert event.data["cached_input_per_mtok"] is None

    page = operator_client.get(reverse("portal:prices")).content.decode()
    assert "New price for oai/gpt-4o-mini, effective now." in page
    assert "<td>0.165</td>" in page and "<td>0.0005</td>" in page


def test_a_future_price_is_scheduled_and_history_grows(operator_client):
    operator_client.post(reverse("portal:price_add"), PRICE)
    later = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    operator_client.post(
        reverse("portal:price_add"), {**PRICE, "input_per_mtok": "0.2", "effective_from": later}
    )

    [row] = prices.current_prices()
    assert row.current.input_per_mtok == Decimal("0.165")
    assert row.scheduled.input_per_mtok == Decimal("0.2")
    page = operator_client.get(reverse("portal:prices")).content.decode()
    assert "2 rows" in page and "scheduled" in page
    assert AuditEvent.objects.filter(action="price.set").count() == 2


def test_a_price_in_the_past_or_a_bad_figure_is_refused(operator_client):
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = operator_client.post(reverse("portal:price_add"), {**PRICE, "effective_from": past})
    assert response.status_code == 400
    assert "past costs are never rewritten" in response.content.decode()

    response = operator_client.post(reverse("portal:price_add"), {**PRICE, "output_per_mtok": "-1"})
    assert response.status_code == 400
    assert not Price.objects.exists()
    assert not AuditEvent.objects.filter(action="price.set").exists()


def test_change_prefills_the_form_with_the_latest_figures(operator_client):
    operator_client.post(reverse("portal:price_add"), PRICE)
    page = operator_client.get(
        reverse("portal:prices"), {"model": "oai/gpt-4o-mini"}
    ).content.decode()
    assert 'value="0.165"' in page and 'value="0.66"' in page

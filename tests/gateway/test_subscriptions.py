"""The gateway enforces subscriptions: a key calls only what its application subscribed to."""

import time

import openai
import pytest

from portal import services
from portal.models import Subscription
from portal.services import SYSTEM
from tests.gateway.helpers import DEMO, apply_yaml

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def world(gateway):
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
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    return app, product, client


def test_unsubscribed_key_gets_403_naming_the_product(world):
    _, _, client = world
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="demo-chat", messages=HELLO)
    assert "'Demo chat'" in denied.value.message
    assert denied.value.body["code"] == "subscription_required"


def test_model_in_no_product_stays_hidden(world):
    _, _, client = world
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="demo-embed", input="x")


def test_approval_and_revocation_take_effect_within_a_second(world):
    app, product, client = world
    sub = services.subscription_request(actor=SYSTEM, application=app, product=product)
    assert sub.status == Subscription.Status.PENDING
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="demo-chat", messages=HELLO)

    services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    time.sleep(1.0)
    assert client.chat.completions.create(model="demo-chat", messages=HELLO).choices

    services.subscription_set_status(actor=SYSTEM, subscription=sub, status="revoked")
    time.sleep(1.0)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="demo-chat", messages=HELLO)


def test_retired_product_grants_nothing(world):
    app, product, client = world
    sub = services.subscription_request(actor=SYSTEM, application=app, product=product)
    services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    services.product_update(actor=SYSTEM, product=product, status="retired")
    time.sleep(1.0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="demo-chat", messages=HELLO)


def test_rotated_key_works_alongside_the_old_one_during_grace(world):
    from datetime import timedelta

    app, product, client = world
    sub = services.subscription_request(actor=SYSTEM, application=app, product=product)
    services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    old = app.api_keys.get()
    new = services.api_key_rotate(actor=SYSTEM, api_key=old, grace=timedelta(hours=1))
    fresh = openai.OpenAI(base_url=client.base_url, api_key=new.secret, max_retries=0)

    assert client.chat.completions.create(model="demo-chat", messages=HELLO).choices
    assert fresh.chat.completions.create(model="demo-chat", messages=HELLO).choices

    services.api_key_rotate(actor=SYSTEM, api_key=new.api_key, grace=timedelta(0))
    time.sleep(1.0)
    with pytest.raises(openai.AuthenticationError):
        fresh.chat.completions.create(model="demo-chat", messages=HELLO)

"""The operator's routing page: breaker health, and drain/resume taking effect in the gateway."""

import openai
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from gateway.models import Deployment
from portal.models import AuditEvent
from tests.gateway.helpers import apply_yaml, new_key


@pytest.fixture
def operator_client(client):
    operator = get_user_model().objects.create_user("op", "op@example.com", "pw", is_staff=True)
    client.force_login(operator)
    return client


def test_non_operators_get_403(client, db):
    user = get_user_model().objects.create_user("dev", "dev@example.com", "pw")
    client.force_login(user)
    assert client.get(reverse("portal:routing")).status_code == 403


def test_drain_takes_a_deployment_out_of_rotation_everywhere(gateway, openai_fake, operator_client):
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - {{name: solo, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
    """)
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    dep = Deployment.objects.get()
    page = operator_client.get(reverse("portal:routing")).content.decode()
    assert "oai/gpt-4o-mini" in page and "closed" in page

    operator_client.post(reverse("portal:routing_drain", args=[dep.pk]), {"drain": "1"})
    assert "drained" in operator_client.get(reverse("portal:routing")).content.decode()
    import time

    time.sleep(0.3)  # the gateway's snapshot of open breakers refreshes every 0.25 s
    with pytest.raises(openai.APIStatusError) as drained:
        api.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
    assert drained.value.status_code == 503 and not openai_fake.requests

    operator_client.post(reverse("portal:routing_drain", args=[dep.pk]), {"drain": "0"})
    time.sleep(0.3)
    assert api.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id"))[-2:] == [
        "deployment.drained",
        "deployment.resumed",
    ]


def test_the_page_shows_open_breakers_cooldowns_rules_and_auto_models(
    gateway, openai_fake, operator_client, settings
):
    settings.GATEWAY_BREAKER_FAILURES = 1
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 60
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{openai_fake.base_url}", api_key: "{openai_fake.api_key}"}}
        models:
          - {{name: solo, tier: 1, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
          - {{name: auto, auto: [solo]}}
        rules:
          - {{name: eu-only, when: {{tenant: [acme], header: {{x-region: "^eu$"}}}}, route_to: solo}}
    """)
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=new_key(), max_retries=0)
    openai_fake.fault(status=500)
    with pytest.raises(openai.InternalServerError):
        api.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])

    page = operator_client.get(reverse("portal:routing")).content.decode()
    assert "health-open" in page
    assert " s</td>" in page  # the cooldown left, in seconds
    assert "eu-only" in page and "tenant is acme" in page and "header x-region matches ^eu$" in page
    assert "the cheapest fit among <code>solo</code>" in page

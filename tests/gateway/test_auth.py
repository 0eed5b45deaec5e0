"""API keys: both header styles, per-model scopes, and revocation within a second."""

import time

import anthropic
import httpx
import openai
import pytest

from portal.models import ApiKey
from portal.services import api_key_revoke
from tests.gateway.helpers import DEMO, apply_yaml, new_key

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def demo(gateway):
    apply_yaml(DEMO)
    return gateway


def test_missing_key_is_401_in_each_format(demo):
    bare = httpx.post(demo.base_url + "/v1/chat/completions", json={"model": "demo-chat"})
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=demo.base_url, api_key="wsk-wrong", max_retries=0
        ).messages.create(model="demo-chat", max_tokens=10, messages=HELLO)


def test_x_api_key_header_works_for_anthropic_clients(demo):
    client = anthropic.Anthropic(base_url=demo.base_url, api_key=new_key(), max_retries=0)

    message = client.messages.create(model="demo-chat", max_tokens=50, messages=HELLO)

    assert message.content[0].text.endswith("You said: hi")


def test_key_scoped_to_models_sees_only_those(demo):
    key = new_key(all_models=False, models=["demo-embed"])
    client = openai.OpenAI(base_url=demo.base_url + "/v1", api_key=key, max_retries=0)

    assert [m.id for m in client.models.list()] == ["demo-embed"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="demo-chat", messages=HELLO)


def test_revoked_key_stops_working_within_one_second(demo):
    key = new_key()
    client = openai.OpenAI(base_url=demo.base_url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="demo-chat", messages=HELLO)

    api_key_revoke(api_key=ApiKey.objects.get())
    time.sleep(1.0)

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo-chat", messages=HELLO)


def test_stored_key_is_a_keyed_hash_not_the_secret(demo):
    secret = new_key()
    stored = ApiKey.objects.get()

    assert len(secret) >= 40 and secret not in stored.secret_hash
    assert secret.startswith(stored.prefix)

"""No secret reaches a log line: provider keys, client keys, SECRET_KEY, the database password.

Every record of every logger is captured at DEBUG while the live gateway serves calls that
succeed, fail upstream (401, 500, a rejected provider key), carry an invalid client key, and
carry the key in other headers and in the body; each record is rendered with all its fields.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings

from tests.fakes.openai_fake import OpenAIFake
from tests.gateway.helpers import apply_yaml, new_key

PROVIDER_KEY = "sk-live-provider-" + secrets.token_hex(16)
WRONG_PROVIDER_KEY = "sk-live-revoked-" + secrets.token_hex(16)
INVALID_CLIENT_KEY = "wsk-invalid-" + secrets.token_hex(16)
HELLO = [{"role": "user", "content": "one two three"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIFake]:
    fake = OpenAIFake(api_key=PROVIDER_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def client_key(gateway, upstream) -> str:
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{upstream.base_url}", api_key: "{PROVIDER_KEY}"}}
          - {{name: oai-revoked, kind: openai, base_url: "{upstream.base_url}", api_key: "{WRONG_PROVIDER_KEY}"}}
        models:
          - {{name: m, price: {{input_per_mtok: 1, output_per_mtok: 2}}, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
          - {{name: m-revoked, deployments: [{{provider: oai-revoked, model: gpt-4o-mini}}]}}
    """)
    return new_key()


def secrets_in_play(client_key: str) -> dict[str, str]:
    found = {
        "provider API key": PROVIDER_KEY,
        "rejected provider API key": WRONG_PROVIDER_KEY,
        "client API key": client_key,
        "invalid client API key": INVALID_CLIENT_KEY,
        "SECRET_KEY": settings.SECRET_KEY,
    }
    password = settings.DATABASES["default"].get("PASSWORD")
    if password:
        found["DATABASE_URL password"] = password
    if settings.WAYSTATION_SECRETS_KEY:
        found["WAYSTATION_SECRETS_KEY"] = settings.WAYSTATION_SECRETS_KEY
    return found


def chat(gateway, model: str, headers: dict[str, str], **body) -> httpx.Response:
    payload = {"model": model, "messages": HELLO, **body}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions", json=payload, headers=headers, timeout=30
    )


def test_no_secret_is_logged_on_any_path(gateway, upstream, client_key, captured, stored_usage):
    bearer = {"Authorization": f"Bearer {client_key}"}

    statuses = [
        chat(gateway, "m", bearer).status_code,
        chat(gateway, "m", bearer, stream=True).status_code,
        chat(gateway, "m-revoked", bearer).status_code,  # the upstream rejects our key
        chat(gateway, "m", {"Authorization": f"Bearer {INVALID_CLIENT_KEY}"}).status_code,
        chat(gateway, "m", {"x-api-key": INVALID_CLIENT_KEY}).status_code,
        chat(gateway, "m", {"api-key": client_key}).status_code,
        chat(gateway, "m", {"x-api-key": client_key, "X-Debug": client_key}).status_code,
        # The key pasted into the body: a user message, and a field the gateway doesn't know.
        chat(
            gateway,
            "m",
            bearer,
            messages=[{"role": "user", "content": f"my key is {client_key} {PROVIDER_KEY}"}],
            api_key=client_key,
        ).status_code,
    ]
    upstream.fault(status=401)
    statuses.append(chat(gateway, "m", bearer).status_code)
    upstream.fault(status=500)
    statuses.append(chat(gateway, "m", bearer).status_code)
    stored_usage()  # the usage path logs too

    assert statuses[:2] == [200, 200]
    assert statuses[3:5] == [401, 401]
    assert {statuses[2], statuses[-2], statuses[-1]} <= {401, 500, 502}
    assert captured.lines, "the capture saw no log line at all"
    leaks = {
        what: [line[:300] for line in captured.lines if value in line]
        for what, value in secrets_in_play(client_key).items()
    }
    assert {what: lines for what, lines in leaks.items() if lines} == {}

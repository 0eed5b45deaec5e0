"""No secret leaks after its one-time display, and stored content is encrypted at rest.

Given a tenant whose owner made a client API key, a personal access token and a report
webhook (each secret shown once, by the service that made it), a provider whose key came in
through config, and a conversation, a stored response and logged calls whose prompt and answer
carry marker strings; when the gateway serves good and bad calls (every logger captured at
DEBUG) and the owner reads every portal page and every GET route of the API; then no secret is
in any log line, any answer or any page, none is in any column of any table, and the markers
are in none of the encrypted columns (read with raw SQL, under the field's decryption).
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import openai
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.test import Client
from django.urls import URLResolver, get_resolver
from rest_framework.test import APIClient

from billing.report_webhooks import report_webhook_set
from gateway import secrets as at_rest
from portal import services
from tests.fakes.control import Reply
from tests.fakes.openai_fake import OpenAIFake
from tests.gateway.helpers import apply_yaml
from tests.security import tally

PROVIDER_KEY = "sk-live-provider-" + secrets.token_hex(16)
PROMPT_MARK = "zebra-prompt-" + secrets.token_hex(8)
ANSWER_MARK = "quokka-answer-" + secrets.token_hex(8)
WEBHOOK_URL = "https://hooks.example.invalid/waystation"

# The columns that hold content encrypted: (table, column, how to read it as text).
ENCRYPTED_COLUMNS = [
    ("gateway_conversationitem", "message", "message::text"),
    ("gateway_storedresponse", "body", "body::text"),
    ("observability_callbody", "data", "data"),
    ("gateway_provider", "api_key_encrypted", "api_key_encrypted"),
    ("billing_reportwebhook", "secret_encrypted", "secret_encrypted"),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIFake]:
    fake = OpenAIFake(api_key=PROVIDER_KEY)
    fake.start()
    yield fake
    fake.stop()


@dataclass
class World:
    owner: Any
    tenant: Any
    app: Any
    key: Any
    token: Any
    conversation: str
    request_ids: list[str]
    secrets: dict[str, str]


def _chat(gateway, key: str | None, **body) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions", json=payload, headers=headers, timeout=30
    )


@pytest.fixture
def world(gateway, upstream, captured, stored_usage) -> World:
    apply_yaml(f"""
        providers:
          - {{name: oai, kind: openai, base_url: "{upstream.base_url}", api_key: "{PROVIDER_KEY}"}}
        models:
          - {{name: m, cache: off, price: {{input_per_mtok: 1, output_per_mtok: 2}}, deployments: [{{provider: oai, model: gpt-4o-mini}}]}}
    """)  # fmt: skip
    owner = get_user_model().objects.create_user("alice", "alice@example.com", "pw-alicealice")
    actor = services.Actor(owner, "127.0.0.1")
    tenant = services.tenant_create(actor=actor, name="Leaky")
    app = services.application_create(actor=actor, tenant=tenant, name="bot")
    issued = services.api_key_create(tenant=tenant, application=app, name="ci", all_models=True)
    token = services.personal_token_create(actor=actor, name="deploy")
    _, hook_secret = report_webhook_set(actor=actor, tenant=tenant, url=WEBHOOK_URL)
    client_key = issued.secret

    upstream.script(Reply(text=f"Noted: {ANSWER_MARK}"), Reply(text=f"Again {ANSWER_MARK}"))
    conv = httpx.post(
        gateway.base_url + "/v1/conversations",
        json={},
        headers={"authorization": f"Bearer {client_key}"},
    ).json()["id"]
    said = [{"role": "user", "content": f"Remember {PROMPT_MARK}"}]
    assert _chat(gateway, client_key, messages=said, conversation=conv).status_code == 200
    sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=client_key, max_retries=0)
    sdk.responses.create(model="m", input=f"Store {PROMPT_MARK}")
    events = stored_usage()
    return World(
        owner=owner,
        tenant=tenant,
        app=app,
        key=issued.api_key,
        token=token.token,
        conversation=conv,
        request_ids=[e.request_id for e in events],
        secrets={
            "provider API key": PROVIDER_KEY,
            "client API key": client_key,
            "personal access token": token.secret,
            "report webhook secret": hook_secret or "",
            "SECRET_KEY": settings.SECRET_KEY,
            **{f"secrets key {n}": key for n, key in enumerate(at_rest.keys())},
        },
    )


def bad_calls(gateway, upstream, w: World) -> list[httpx.Response]:
    """Calls that fail: each answer's error message is a place a secret could leak."""
    client_key = w.secrets["client API key"]
    wrong = client_key[:-4] + "xxxx"
    answers = [
        _chat(gateway, wrong),
        _chat(gateway, w.secrets["personal access token"]),  # a PAT is no gateway key
        _chat(gateway, client_key, model="no-such-model"),
        _chat(gateway, client_key, messages="not a list"),
        _chat(gateway, client_key, api_key=client_key, temperature="hot"),
        httpx.post(
            gateway.base_url + "/v1/chat/completions",
            content=b"{not json " + client_key.encode(),
            headers={"authorization": f"Bearer {client_key}"},
        ),
        httpx.get(
            gateway.base_url + "/v1/conversations/conv_nope",
            headers={"authorization": f"Bearer {client_key}"},
        ),
    ]
    upstream.fault(status=401)  # the provider rejects our key
    answers.append(_chat(gateway, client_key))
    upstream.fault(status=500)
    answers.append(_chat(gateway, client_key))
    return answers


def _routes(prefix: str) -> Iterator[tuple[str, Any]]:
    def walk(patterns, path):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, path + str(pattern.pattern))
            else:
                yield path + str(pattern.pattern), pattern

    for route, pattern in walk(get_resolver().url_patterns, ""):
        if route.startswith(prefix):
            yield route, pattern


def _paths(prefix: str, values: dict[str, Any]) -> list[str]:
    """Every route under `prefix`, its parameters filled from `values` (routes with a
    parameter we have no value for are left out)."""

    out = []
    for route, _ in _routes(prefix):
        names = re.findall(r"<(?:\w+:)?(\w+)>", route)
        if all(n in values for n in names):
            out.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m[1]]), route))
    return out


def portal_and_api_reads(w: World) -> list[tuple[str, int, bytes]]:
    """GET every portal page and API route of the tenant, as its owner."""
    month = date.today().strftime("%Y-%m")
    values = {
        "slug": w.tenant.slug,
        "app_id": w.app.pk,
        "public_id": w.conversation,
        "request_id": w.request_ids[0],
        "month": month,
        "fmt": "csv",
    }
    page_client = Client()
    page_client.force_login(w.owner)
    seen = [(p, *_get(page_client, p)) for p in _paths("portal/", values)]
    seen += [
        (p, *_get(page_client, p))
        for rid in w.request_ids
        for p in (f"/portal/t/{w.tenant.slug}/calls/{rid}/", f"/api/v1/calls/{rid}/")
    ]
    api = APIClient()
    api.force_authenticate(w.owner)
    api_values = {**values, "id": w.app.pk}
    seen += [(p, *_get(api, p)) for p in _paths("api/v1/", api_values)]
    return seen


def _get(client, path: str) -> tuple[int, bytes]:
    response = client.get(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body


def _text(value: Any) -> str:
    if isinstance(value, memoryview | bytes):
        return bytes(value).decode("latin-1")
    return "" if value is None else str(value)


def every_stored_value() -> Iterator[tuple[str, str]]:
    """(table.column, value as text) for every column of every table, by raw SQL."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            names = [c.name for c in cursor.description]
            for row in cursor.fetchall():
                for name, value in zip(names, row, strict=True):
                    yield f"{table}.{name}", _text(value)


def test_no_secret_leaks_and_content_is_encrypted_at_rest(gateway, upstream, world, captured):
    w = world
    answers = bad_calls(gateway, upstream, w)
    reads = portal_and_api_reads(w)

    places = [(f"answer {r.request.url.path} {r.status_code}", r.text) for r in answers]
    places += [
        (f"GET {path} {status}", body.decode("utf-8", "replace")) for path, status, body in reads
    ]
    places += [(f"log line {n}", line) for n, line in enumerate(captured.lines)]
    places += list(every_stored_value())
    leaks = [
        (what, where)
        for where, text in places
        for what, secret in w.secrets.items()
        if secret and secret in text
    ]
    tally.add("secrets: places checked", len(places))
    tally.add("secrets: leaks", len(leaks))

    assert all(w.secrets.values()) and captured.lines
    assert {status for _, status, _ in reads} <= {200, 302, 403, 404, 405}, [
        (p, s) for p, s, _ in reads if s >= 500
    ]
    shown = {path: body for path, status, body in reads if status == 200}
    slug, app = w.tenant.slug, w.app.pk
    must_read = {
        f"/portal/t/{slug}/applications/", f"/portal/applications/{app}/", "/portal/tokens/",
        f"/portal/t/{slug}/reports/", f"/portal/t/{slug}/calls/", f"/portal/t/{slug}/audit/",
        f"/portal/t/{slug}/conversations/", f"/api/v1/applications/{app}/keys/",
        "/api/v1/tokens/", "/api/v1/calls/", "/api/v1/audit/",
    }  # fmt: skip
    assert must_read <= set(shown), must_read - set(shown)
    conversation_page = f"/portal/t/{w.tenant.slug}/conversations/{w.conversation}/"
    call_page = f"/portal/t/{w.tenant.slug}/calls/{w.request_ids[0]}/"
    # The content is read back decrypted where its owner looks for it.
    assert PROMPT_MARK.encode() in shown[conversation_page]
    assert PROMPT_MARK.encode() in shown[call_page]
    assert PROMPT_MARK.encode() in shown[f"/api/v1/calls/{w.request_ids[0]}/"]
    assert leaks == []


def test_encrypted_columns_hold_no_plaintext(world):
    w = world
    found: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table, column, select in ENCRYPTED_COLUMNS:
            cursor.execute(f"SELECT {select} FROM {table}")  # noqa: S608
            found[f"{table}.{column}"] = [_text(v) for (v,) in cursor.fetchall()]
    marks = [PROMPT_MARK, ANSWER_MARK, *w.secrets.values()]
    plaintext = [
        (where, mark)
        for where, values in found.items()
        for v in values
        for mark in marks
        if mark in v
    ]
    tally.add("secrets: places checked", sum(len(v) for v in found.values()))
    tally.add("secrets: leaks", len(plaintext))

    assert all(
        found[c] for c in ("gateway_conversationitem.message", "gateway_storedresponse.body")
    )
    assert found["observability_callbody.data"]
    assert plaintext == []
    # Nor anywhere else: no other column keeps a copy of the prompt or the answer.
    stored = list(every_stored_value())
    elsewhere = sorted({where for where, text in stored for m in marks if m in text})
    tally.add("secrets: places checked", len(stored))
    tally.add("secrets: leaks", len(elsewhere))
    assert elsewhere == []
    for column in ("gateway_conversationitem.message", "gateway_storedresponse.body"):
        assert all(v.startswith('"' + at_rest.TOKEN_PREFIX) for v in found[column]), column
    for value in found["observability_callbody.data"]:
        with pytest.raises(zlib.error):
            zlib.decompress(value.encode("latin-1"))


def _text_fields(model: type[models.Model]) -> list[str]:
    kinds = (models.CharField, models.TextField, models.JSONField, models.BinaryField)
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, kinds)]


def test_api_keys_and_tokens_are_stored_only_as_keyed_hashes(db):
    owner = get_user_model().objects.create_user("bob", "bob@example.com", "pw-bobbobbob")
    actor = services.Actor(owner, "127.0.0.1")
    tenant = services.tenant_create(actor=actor, name="Hashes")
    key = services.api_key_create(tenant=tenant, name="ci", all_models=True)
    token = services.personal_token_create(actor=actor, name="deploy")

    # Every text-like column of every model, read through the ORM (decrypted where encrypted).
    values = [
        (model._meta.label, name, _text(value))
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
        for name in _text_fields(model)
        for value in model._default_manager.values_list(name, flat=True)
    ]
    found = [(m, f) for m, f, v in values for s in (key.secret, token.secret) if s in v]
    tally.add("secrets: places checked", len(values))
    tally.add("secrets: leaks", len(found))

    assert key.api_key.secret_hash and key.secret not in key.api_key.secret_hash
    assert token.token.secret_hash and token.secret not in token.token.secret_hash
    assert found == []

"""Key rotation: what was encrypted under key 1 is re-encrypted under key 2 by
`manage.py rotate_secrets`, everything stays readable, and once key 1 is dropped everything
still reads. Rows stored before encryption are read as they are and sealed by the command."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from billing.models import ReportWebhook
from gateway import secrets
from gateway.models import Conversation, ConversationItem, Provider, StoredResponse
from observability import bodies
from observability.models import CallBody
from portal import services
from tests.security import tally

KEY1, KEY2, KEY3 = (Fernet.generate_key().decode() for _ in range(3))
MESSAGE = {"role": "user", "content": [{"type": "text", "text": "the launch code is 0000"}]}
RESPONSE = {"id": "resp_1", "output": [{"type": "message", "content": "ok"}]}
CALL = {"request": {"messages": ["secret plans"]}, "response": {"output_text": "noted"}}


def _world() -> dict:
    tenant = services.tenant_get_or_create(slug="rotating")
    provider = Provider.objects.create(
        name="oai", kind="openai", api_key_encrypted=secrets.encrypt("sk-provider")
    )
    hook = ReportWebhook.objects.create(
        tenant=tenant, url="https://hooks.example.invalid/", secret_encrypted=secrets.encrypt("wh")
    )
    conv = Conversation.objects.create(public_id="conv_r", tenant_id=tenant.pk)
    items = [
        ConversationItem.objects.create(
            conversation=conv, seq=n, public_id=f"msg_{n}", message=MESSAGE, tokens=5
        )
        for n in range(5)
    ]
    stored = StoredResponse.objects.create(
        public_id="resp_1", tenant_id=tenant.pk, conversation=conv, input_from=0, output_from=1,
        upto=2, body=RESPONSE,
    )  # fmt: skip
    data, size = bodies.encode(CALL)
    now = datetime.now(UTC)
    for n in range(3):
        CallBody.objects.create(request_id=f"req-{n}", created_at=now, data=data, size=size)
    return {"provider": provider, "hook": hook, "items": items, "response": stored}


def _legacy_rows(w: dict) -> None:
    """Rows as an earlier release wrote them: plain JSON, plain zlib."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE gateway_conversationitem SET message = %s::jsonb WHERE id = %s",
            [orjson.dumps(MESSAGE).decode(), w["items"][0].pk],
        )
    CallBody.objects.create(
        request_id="req-legacy", created_at=datetime.now(UTC),
        data=zlib.compress(orjson.dumps(CALL)), size=1,
    )  # fmt: skip


def _everything_reads(w: dict, calls: int = 4) -> None:
    assert secrets.decrypt(Provider.objects.get(pk=w["provider"].pk).api_key_encrypted) == (
        "sk-provider"
    )
    assert secrets.decrypt(ReportWebhook.objects.get(pk=w["hook"].pk).secret_encrypted) == "wh"
    assert [i.message for i in ConversationItem.objects.order_by("seq")] == [MESSAGE] * 5
    assert list(ConversationItem.objects.values_list("message", flat=True)) == [MESSAGE] * 5
    assert StoredResponse.objects.get(pk=w["response"].pk).body == RESPONSE
    assert [bodies.decode(b.data) for b in CallBody.objects.all()] == [CALL] * calls


def _rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def _raw_tokens() -> list[bytes]:
    """Every stored token, as Fernet takes it."""
    import base64
    import json

    tokens = [p.api_key_encrypted.encode() for p in Provider.objects.all()]
    tokens += [h.secret_encrypted.encode() for h in ReportWebhook.objects.all()]
    with connection.cursor() as cursor:
        for select in (
            "SELECT message::text FROM gateway_conversationitem",
            "SELECT body::text FROM gateway_storedresponse",
        ):
            cursor.execute(select)
            tokens += [json.loads(v).encode() for (v,) in cursor.fetchall()]
        cursor.execute("SELECT data FROM observability_callbody")
        tokens += [base64.urlsafe_b64encode(bytes(v)) for (v,) in cursor.fetchall()]
    return tokens


def test_rotation_moves_everything_to_the_new_key_and_the_old_key_can_go(db, settings):
    settings.WAYSTATION_SECRETS_KEYS = [KEY1]
    w = _world()
    _legacy_rows(w)
    _everything_reads(w)  # legacy rows read as they are, beside sealed ones

    settings.WAYSTATION_SECRETS_KEYS = [KEY2, KEY1]
    _everything_reads(w)  # before the rotation: key 1 still opens them
    report = _rotate(batch_size=2)

    assert "gateway.ConversationItem.message: 5 scanned, 5 re-encrypted, 0 already current" in (
        report
    )
    assert "observability.CallBody.data: 4 scanned, 4 re-encrypted" in report
    tokens = _raw_tokens()
    assert len(tokens) == 1 + 1 + 5 + 1 + 4
    assert all(Fernet(KEY2).decrypt(t) for t in tokens)

    again = _rotate()  # idempotent: nothing left to do
    assert " 0 re-encrypted" in again and "re-encrypted" in again
    assert all(" 0 re-encrypted" in line for line in again.splitlines())

    settings.WAYSTATION_SECRETS_KEYS = [KEY2]  # the old key removed
    _everything_reads(w)
    tally.add("secrets: rotation values checked", len(tokens))


def test_a_single_key_setting_still_works_and_lists_win(db, settings):
    settings.WAYSTATION_SECRETS_KEYS = []
    settings.WAYSTATION_SECRETS_KEY = KEY1
    token = secrets.encrypt("x")
    assert Fernet(KEY1).decrypt(token.encode()) == b"x"

    settings.WAYSTATION_SECRETS_KEYS = [KEY2]
    assert secrets.decrypt(token) is None  # the list replaces the single key
    settings.WAYSTATION_SECRETS_KEYS = [KEY2, KEY1]
    assert secrets.decrypt(token) == "x"


def test_values_no_configured_key_opens_are_reported_and_left_alone(db, settings):
    settings.WAYSTATION_SECRETS_KEYS = [KEY1]
    w = _world()
    settings.WAYSTATION_SECRETS_KEYS = [KEY3]

    with pytest.raises(CommandError, match="no configured key opens"):
        _rotate(dry_run=True)
    with pytest.raises(CommandError, match="no configured key opens"):
        _rotate()

    settings.WAYSTATION_SECRETS_KEYS = [KEY1]  # untouched: the right key still reads all
    _everything_reads(w, calls=3)


def test_only_limits_the_columns_and_dry_run_writes_nothing(db, settings):
    settings.WAYSTATION_SECRETS_KEYS = [KEY1]
    _world()
    settings.WAYSTATION_SECRETS_KEYS = [KEY2, KEY1]

    dry = _rotate(only=["gateway.Provider.api_key_encrypted"], dry_run=True)
    assert dry.strip() == (
        "gateway.Provider.api_key_encrypted: 1 scanned, 1 to re-encrypt, 0 already current, "
        "0 unreadable"
    )
    assert not secrets.is_current(Provider.objects.get().api_key_encrypted.encode())
    assert _rotate(only=["gateway.Provider.api_key_encrypted"]).startswith(
        "gateway.Provider.api_key_encrypted: 1 scanned, 1 re-encrypted"
    )
    assert secrets.is_current(Provider.objects.get().api_key_encrypted.encode())

"""Re-encrypting what is stored encrypted under the current key (`manage.py rotate_secrets`).

Every encrypted column is walked in primary-key order, a batch per transaction; a value the
current key already opens is left alone, so a run that stops can simply be started again, and
a second run changes nothing. Values stored before encryption existed (call bodies,
conversation items, stored responses) are encrypted on the way. Rows are rewritten with an
UPDATE of that one column, so a concurrent writer of other columns is not overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Cast

from gateway import secrets
from gateway.fields import EncryptedJSONField

TOKEN, JSON, BYTES = "token", "json", "bytes"

# Columns holding a Fernet token as text, or sealed bytes; EncryptedJSONFields are found.
LISTED = (
    ("gateway.Provider", "api_key_encrypted", TOKEN),
    ("billing.ReportWebhook", "secret_encrypted", TOKEN),
    ("observability.CallBody", "data", BYTES),
)


@dataclass(frozen=True)
class Column:
    model: type[models.Model]
    name: str
    kind: str

    def __str__(self) -> str:
        return f"{self.model._meta.label}.{self.name}"


@dataclass
class Counts:
    scanned: int = 0
    rotated: int = 0
    current: int = 0
    unreadable: int = 0
    unreadable_ids: list[Any] = field(default_factory=list)


def encrypted_columns() -> list[Column]:
    found = [Column(apps.get_model(label), name, kind) for label, name, kind in LISTED]
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            if isinstance(f, EncryptedJSONField):
                found.append(Column(model, f.name, JSON))
    return found


def rotate_column(column: Column, *, batch_size: int = 500, dry_run: bool = False) -> Counts:
    """Re-encrypt one column under the current key, batch by batch (each its own transaction)."""
    counts = Counts()
    for batch in _batches(column, batch_size):
        with transaction.atomic():
            for pk, raw in batch:
                counts.scanned += 1
                try:
                    new = _rekeyed(column.kind, raw)
                except (InvalidToken, ValueError):
                    counts.unreadable += 1
                    counts.unreadable_ids.append(pk)
                    continue
                if new is None:
                    counts.current += 1
                    continue
                counts.rotated += 1
                if not dry_run:
                    column.model._default_manager.filter(pk=pk).update(**{column.name: new})
    return counts


def _batches(column: Column, size: int) -> Iterator[list[tuple[Any, Any]]]:
    """(pk, stored value) in pk order; JSON as its text, so nothing is decrypted on the way."""
    rows = column.model._default_manager.order_by("pk")
    value = Cast(column.name, models.TextField()) if column.kind == JSON else F(column.name)
    last = None
    while True:
        page = rows if last is None else rows.filter(pk__gt=last)
        batch = list(page.annotate(stored=value).values_list("pk", "stored")[:size])
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def _rekeyed(kind: str, raw: Any) -> Any:
    """What to write so the value is under the current key, or None when it already is.
    For JSON, the plain value: the field encrypts it on save."""
    if raw is None or raw == "":
        return None
    if kind == BYTES:
        return secrets.rotate_bytes(raw)
    if kind == TOKEN:
        return None if secrets.is_current(raw.encode()) else secrets.rotate(raw.encode())
    parsed = json.loads(raw)
    if not (isinstance(parsed, str) and parsed.startswith(secrets.TOKEN_PREFIX)):
        return parsed  # stored before encryption
    if secrets.is_current(parsed.encode()):
        return None
    return json.loads(secrets.decrypt_bytes(parsed.encode()))

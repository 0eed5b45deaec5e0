"""Model fields that encrypt at rest (gateway/secrets.py keys): the value is sealed on save and
opened on load, so code using the model sees plain values.

EncryptedJSONField stores the Fernet token of the JSON text as a JSON string, in the same
jsonb column a JSONField uses: switching a JSONField to it changes no column and needs no data
migration. Rows written before are JSON objects or arrays, never a string starting with the
token prefix, and are read as they are; `manage.py rotate_secrets` seals them when convenient.
The token is random, so lookups into the value (`message__role=...`) match nothing: don't.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import InvalidToken
from django.db import models

from gateway import secrets


class UndecryptableError(ValueError):
    """A stored value no configured key opens (a key was dropped before rotate_secrets?)."""


class EncryptedJSONField(models.JSONField):
    description = "JSON, Fernet-encrypted at rest"

    def get_prep_value(self, value: Any) -> Any:
        if value is None or hasattr(value, "as_sql"):
            return value
        return secrets.encrypt_bytes(json.dumps(value, cls=self.encoder).encode())

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, str) and value.startswith(secrets.TOKEN_PREFIX):
            return json.loads(open_token(value), cls=self.decoder)
        return value  # written before encryption


def open_token(token: str) -> bytes:
    try:
        return secrets.decrypt_bytes(token.encode())
    except InvalidToken:
        raise UndecryptableError(
            "A stored value can't be decrypted with WAYSTATION_SECRETS_KEYS "
            "(was a key removed before `manage.py rotate_secrets` finished?)"
        ) from None

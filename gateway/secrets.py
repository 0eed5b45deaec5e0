"""Provider credentials at rest: Fernet-encrypted, or a reference to an environment variable."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    key = settings.WAYSTATION_SECRETS_KEY
    if not key:
        key = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
    return Fernet(key)


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str | None:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def resolve_api_key(*, env_name: str, encrypted: str) -> str | None:
    if env_name:
        return os.environ.get(env_name)
    if encrypted:
        return decrypt(encrypted)
    return None

"""Secrets at rest: Fernet-encrypted, or a reference to an environment variable.

Keys: WAYSTATION_SECRETS_KEYS (comma-separated, the first encrypts, every one decrypts, so a
key can be rotated in: add the new key first, run `manage.py rotate_secrets`, then drop the
old one), else WAYSTATION_SECRETS_KEY (one key), else a key derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# Every Fernet token starts with the version byte 0x80; base64url, that reads "gAAAAA".
TOKEN_PREFIX = "gAAAAA"
TOKEN_VERSION = 0x80

_cache: dict[tuple[str, ...], tuple[MultiFernet, Fernet]] = {}


def keys() -> tuple[str, ...]:
    """The configured keys, current first."""
    listed = tuple(k.strip() for k in getattr(settings, "WAYSTATION_SECRETS_KEYS", ()) if k.strip())
    if listed:
        return listed
    if settings.WAYSTATION_SECRETS_KEY:
        return (settings.WAYSTATION_SECRETS_KEY,)
    derived = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
    return (derived.decode(),)


def _fernets() -> tuple[MultiFernet, Fernet]:
    """(every key, the current key); rebuilt only when the settings change (tests override)."""
    configured = keys()
    cached = _cache.get(configured)
    if cached is None:
        current = [Fernet(k) for k in configured]
        cached = _cache[configured] = (MultiFernet(current), current[0])
        if len(_cache) > 8:
            _cache.clear()
            _cache[configured] = cached
    return cached


def encrypt_bytes(data: bytes) -> str:
    return _fernets()[0].encrypt(data).decode()


def decrypt_bytes(token: str | bytes) -> bytes:
    """Raises InvalidToken when no configured key opens it."""
    return _fernets()[0].decrypt(token)


def is_current(token: str | bytes) -> bool:
    """Whether the current key opens this token (rotation leaves it alone)."""
    try:
        _fernets()[1].decrypt(token)
    except InvalidToken:
        return False
    return True


def rotate(token: str | bytes) -> str:
    """The same plaintext under the current key; raises InvalidToken when no key opens it."""
    return _fernets()[0].rotate(token).decode()


def encrypt(secret: str) -> str:
    return encrypt_bytes(secret.encode())


def decrypt(token: str) -> str | None:
    try:
        return decrypt_bytes(token.encode()).decode()
    except InvalidToken:
        return None


def resolve_api_key(*, env_name: str, encrypted: str) -> str | None:
    if env_name:
        return os.environ.get(env_name)
    if encrypted:
        return decrypt(encrypted)
    return None


# Binary columns keep the token's raw bytes (a third smaller than its base64). They start
# with the version byte 0x80, which no zlib stream does (its first byte is 0x?8, ? < 8), so a
# column of compressed data can hold sealed and not-yet-sealed rows side by side.
def seal_bytes(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(encrypt_bytes(data))


def is_sealed(data: bytes | memoryview) -> bool:
    return bytes(data[:1]) == bytes([TOKEN_VERSION])


def open_bytes(data: bytes | memoryview) -> bytes:
    """The plaintext of sealed bytes; unsealed (older) bytes as they are. Raises InvalidToken
    when no configured key opens them."""
    raw = bytes(data)
    if not is_sealed(raw):
        return raw
    return decrypt_bytes(base64.urlsafe_b64encode(raw))


def rotate_bytes(data: bytes | memoryview) -> bytes | None:
    """Sealed bytes under the current key, or None when they already are."""
    raw = bytes(data)
    if not is_sealed(raw):
        return seal_bytes(raw)
    token = base64.urlsafe_b64encode(raw)
    return None if is_current(token) else base64.urlsafe_b64decode(rotate(token))

"""Reads of portal objects."""

from __future__ import annotations

from portal.models import ApiKey


def api_key_by_secret_hash(*, secret_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("tenant").filter(secret_hash=secret_hash).first()

"""Tenants and API keys: the business rules."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.models import ApiKey, Tenant

KEY_PREFIX = "wsk-"


def hash_secret(secret: str) -> str:
    """Keyed (HMAC-SHA256) so a leaked table can't be checked offline without SECRET_KEY."""
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def tenant_get_or_create(*, slug: str, name: str | None = None) -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


@transaction.atomic
def api_key_create(
    *, tenant: Tenant, name: str, all_models: bool = False, models: list[str] | None = None
) -> IssuedKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=secret[: len(KEY_PREFIX) + 6],
        secret_hash=hash_secret(secret),
        all_models=all_models,
        allowed_models=sorted(set(models or [])),
    )
    return IssuedKey(api_key, secret)


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())

"""Applications, their API keys, and personal access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from portal import access
from portal.models import (
    ApiKey,
    Application,
    PersonalAccessToken,
    Tenant,
)
from portal.services.common import (
    KEY_PREFIX,
    SYSTEM,
    TOKEN_PREFIX,
    Actor,
    ServiceError,
    _check,
    _new_secret,
    audit,
)


@transaction.atomic
def application_create(
    *, actor: Actor, tenant: Tenant, name: str, description: str = ""
) -> Application:
    _check(actor, tenant, "application.manage")
    name = name.strip()
    if not name:
        raise ServiceError("An application needs a name.")
    if Application.objects.filter(tenant=tenant, name=name).exists():
        raise ServiceError(f"This tenant already has an application named '{name}'.")
    app = Application.objects.create(
        tenant=tenant,
        name=name,
        description=description,
        created_by=actor.user if getattr(actor.user, "pk", None) else None,
    )
    audit(actor=actor, tenant=tenant, action="application.created", target=app)
    return app


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    all_models: bool = False,
    models: list[str] | None = None,
    application: Application | None = None,
    expires_at: datetime | None = None,
    actor: Actor = SYSTEM,
) -> IssuedKey:
    _check(actor, tenant, "key.manage")
    if application is not None and application.tenant_id != tenant.pk:
        raise ServiceError("The application belongs to another tenant.")
    grants = all_models or bool(models)
    if grants and actor.user is not None and not getattr(actor.user, "is_staff", False):
        raise access.Denied("Only the operator grants models to a key directly.")
    secret, prefix, secret_hash = _new_secret(KEY_PREFIX)
    api_key = ApiKey.objects.create(
        tenant=tenant,
        application=application,
        name=name,
        prefix=prefix,
        secret_hash=secret_hash,
        all_models=all_models,
        allowed_models=sorted(set(models or [])),
        expires_at=expires_at,
    )
    audit(actor=actor, tenant=tenant, action="key.created", target=api_key)
    return IssuedKey(api_key, secret)


@transaction.atomic
def api_key_rotate(*, actor: Actor, api_key: ApiKey, grace: timedelta) -> IssuedKey:
    """A new key with the same grants; the old one keeps working for `grace`, then expires."""
    _check(actor, api_key.tenant, "key.manage")
    if api_key.revoked_at is not None:
        raise ServiceError("A revoked key can't be rotated.")
    if not timedelta(0) <= grace <= timedelta(days=30):
        raise ServiceError("The grace period must be between 0 and 30 days.")
    issued = api_key_create(
        tenant=api_key.tenant,
        name=api_key.name,
        all_models=api_key.all_models,
        models=api_key.allowed_models,
        application=api_key.application,
        expires_at=api_key.expires_at,
        actor=SYSTEM,
    )
    ends = timezone.now() + grace
    api_key.expires_at = min(api_key.expires_at, ends) if api_key.expires_at else ends
    api_key.rotated_to = issued.api_key
    api_key.save(update_fields=["expires_at", "rotated_to"])
    audit(
        actor=actor,
        tenant=api_key.tenant,
        action="key.rotated",
        target=api_key,
        new_key=issued.api_key.prefix,
        grace_seconds=int(grace.total_seconds()),
    )
    return issued


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Actor = SYSTEM) -> None:
    _check(actor, api_key.tenant, "key.manage")
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if changed:
        audit(actor=actor, tenant=api_key.tenant, action="key.revoked", target=api_key)


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalAccessToken
    secret: str


@transaction.atomic
def personal_token_create(*, actor: Actor, name: str) -> IssuedToken:
    secret, prefix, secret_hash = _new_secret(TOKEN_PREFIX)
    token = PersonalAccessToken.objects.create(
        user=actor.user, name=name, prefix=prefix, secret_hash=secret_hash
    )
    audit(actor=actor, tenant=None, action="token.created", target=token)
    return IssuedToken(token, secret)


@transaction.atomic
def personal_token_revoke(*, actor: Actor, token: PersonalAccessToken) -> None:
    if actor.user is not None and token.user_id != getattr(actor.user, "pk", None):
        raise access.Denied("Only its owner revokes a personal access token.")
    changed = PersonalAccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if changed:
        audit(actor=actor, tenant=None, action="token.revoked", target=token)

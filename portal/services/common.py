"""What every service shares: the actor, the audit trail, hashed secrets, the error type."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings

from portal import access
from portal.models import (
    AuditEvent,
    Tenant,
)

log = logging.getLogger(__name__)


KEY_PREFIX = "wsk-"


TOKEN_PREFIX = "wspat-"


class ServiceError(Exception):
    """A rule the request broke, said so that the user can act on it (400)."""


def hash_secret(secret: str) -> str:
    """Keyed (HMAC-SHA256) so a leaked table can't be checked offline without SECRET_KEY."""
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who acts, for permissions and the audit log."""

    user: object | None
    source_ip: str | None = None

    @property
    def label(self) -> str:
        return str(self.user) if self.user is not None else "system"


SYSTEM = Actor(None)


def audit(*, actor: Actor, tenant: Tenant | None, action: str, target: object, **data) -> None:
    AuditEvent.objects.create(
        actor=actor.user if getattr(actor.user, "pk", None) else None,
        actor_label=actor.label,
        tenant=tenant,
        action=action,
        target_type=type(target).__name__,
        target_id=str(getattr(target, "pk", "")),
        target_label=str(target)[:300],
        source_ip=actor.source_ip,
        data=data,
    )


def _check(actor: Actor, tenant: Tenant | None, action: str) -> None:
    if actor.user is not None:
        access.require(actor.user, tenant, action)


def _new_secret(prefix: str) -> tuple[str, str, str]:
    secret = prefix + secrets.token_urlsafe(32)  # 32 random bytes
    return secret, secret[: len(prefix) + 6], hash_secret(secret)

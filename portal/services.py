"""Tenants, members, applications, keys, products and subscriptions: the business rules.

Writes check the permission matrix (portal.access) and record an audit event in the same
transaction; a service never trusts that the caller checked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal import access
from portal.models import (
    ApiKey,
    Application,
    AuditEvent,
    Invitation,
    Membership,
    PersonalAccessToken,
    Product,
    Role,
    Subscription,
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


# --- tenants and members ----------------------------------------------------------


def tenant_get_or_create(*, slug: str, name: str | None = None) -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return tenant


@transaction.atomic
def tenant_create(*, actor: Actor, name: str, slug: str | None = None) -> Tenant:
    slug = slugify(slug or name)[:50]
    if not slug:
        raise ServiceError("A tenant needs a name with letters or digits.")
    if Tenant.objects.filter(slug=slug).exists():
        raise ServiceError(f"The tenant '{slug}' already exists; pick another name.")
    tenant = Tenant.objects.create(slug=slug, name=name)
    if actor.user is not None:
        Membership.objects.create(user=actor.user, tenant=tenant, role=Role.OWNER)
    audit(actor=actor, tenant=tenant, action="tenant.created", target=tenant)
    return tenant


@transaction.atomic
def invitation_create(*, actor: Actor, tenant: Tenant, email: str, role: str) -> Invitation:
    _check(actor, tenant, "tenant.manage_members")
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'.")
    if role == Role.OWNER:
        _check(actor, tenant, "tenant.transfer_ownership")
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email.lower(),
        role=role,
        token=secrets.token_urlsafe(32),
        invited_by=actor.user if getattr(actor.user, "pk", None) else None,
    )
    audit(actor=actor, tenant=tenant, action="member.invited", target=invitation, role=role)
    transaction.on_commit(lambda: _mail_invitation(invitation))
    return invitation


def _mail_invitation(invitation: Invitation) -> None:
    send_mail(
        f"You are invited to {invitation.tenant.name} on Waystation",
        f"Accept the invitation: {settings.PORTAL_BASE_URL}/portal/invitations/{invitation.token}/",
        None,
        [invitation.email],
    )


@transaction.atomic
def invitation_accept(*, actor: Actor, token: str) -> Membership:
    invitation = Invitation.objects.select_for_update().filter(token=token).first()
    if invitation is None or invitation.accepted_at is not None:
        raise ServiceError("This invitation is not valid any more.")
    membership, _ = Membership.objects.update_or_create(
        user=actor.user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit(actor=actor, tenant=invitation.tenant, action="member.joined", target=membership)
    return membership


@transaction.atomic
def membership_set_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    tenant = membership.tenant
    _check(actor, tenant, "tenant.manage_members")
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'.")
    if Role.OWNER in (role, membership.role):
        _check(actor, tenant, "tenant.transfer_ownership")
    if membership.role == Role.OWNER and role != Role.OWNER and _last_owner(membership):
        raise ServiceError("A tenant keeps at least one owner.")
    before, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    audit(
        actor=actor,
        tenant=tenant,
        action="member.role_changed",
        target=membership,
        before=before,
        after=role,
    )
    return membership


def _last_owner(membership: Membership) -> bool:
    owners = Membership.objects.filter(tenant=membership.tenant, role=Role.OWNER)
    return owners.exclude(pk=membership.pk).count() == 0


@transaction.atomic
def membership_remove(*, actor: Actor, membership: Membership) -> None:
    _check(actor, membership.tenant, "tenant.manage_members")
    if membership.role == Role.OWNER:
        _check(actor, membership.tenant, "tenant.transfer_ownership")
        if _last_owner(membership):
            raise ServiceError("A tenant keeps at least one owner.")
    audit(actor=actor, tenant=membership.tenant, action="member.removed", target=membership)
    membership.delete()


# --- applications and keys --------------------------------------------------------


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


def _new_secret(prefix: str) -> tuple[str, str, str]:
    secret = prefix + secrets.token_urlsafe(32)  # 32 random bytes
    return secret, secret[: len(prefix) + 6], hash_secret(secret)


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


# --- subscriptions ----------------------------------------------------------------


@transaction.atomic
def subscription_request(
    *, actor: Actor, application: Application, product: Product
) -> Subscription:
    _check(actor, application.tenant, "subscription.request")
    if not product.callable:
        raise ServiceError(
            f"'{product.name}' is {product.get_status_display().lower()}: no new subscriptions."
        )
    if (
        product.visibility == Product.Visibility.PRIVATE
        and product.owner_id != application.tenant_id
    ):
        raise ServiceError(f"'{product.name}' is private to its team.")
    existing = Subscription.objects.filter(application=application, product=product).first()
    if existing is not None and existing.status in (
        Subscription.Status.ACTIVE,
        Subscription.Status.PENDING,
    ):
        return existing
    if existing is not None and existing.status == Subscription.Status.SUSPENDED:
        raise ServiceError("This subscription is suspended; the product's admins can resume it.")
    # After a rejection or a revocation, asking again always needs a decision.
    needs_approval = product.approval_required or existing is not None
    status = Subscription.Status.PENDING if needs_approval else Subscription.Status.ACTIVE
    sub = existing or Subscription(application=application, product=product)
    sub.status, sub.reason, sub.decided_at, sub.decided_by = status, "", None, None
    sub.requested_by = actor.user if getattr(actor.user, "pk", None) else None
    sub.save()
    audit(
        actor=actor,
        tenant=application.tenant,
        action="subscription.requested",
        target=sub,
        status=status,
    )
    if status == Subscription.Status.PENDING:
        transaction.on_commit(lambda: _mail_approvers(sub))
    return sub


def _mail_approvers(sub: Subscription) -> None:
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    if sub.product.owner_id is None:
        recipients = users.filter(is_staff=True)
    else:
        recipients = users.filter(
            memberships__tenant=sub.product.owner, memberships__role__in=[Role.OWNER, Role.ADMIN]
        )
    emails = sorted({u.email for u in recipients if u.email})
    if emails:
        send_mail(
            f"Approval needed: {sub.application} wants {sub.product}",
            f"Review it in the approvals queue: {settings.PORTAL_BASE_URL}/portal/approvals/",
            None,
            emails,
        )


@transaction.atomic
def subscription_decide(
    *, actor: Actor, subscription: Subscription, approve: bool, reason: str = ""
) -> Subscription:
    if actor.user is not None and not access.may_decide(actor.user, subscription.product):
        raise access.Denied("Only the product's admins (or the operator) decide subscriptions.")
    if subscription.status != Subscription.Status.PENDING:
        raise ServiceError("Only a pending subscription can be approved or rejected.")
    if not approve and not reason.strip():
        raise ServiceError("Say why the subscription is rejected.")
    subscription.status = Subscription.Status.ACTIVE if approve else Subscription.Status.REJECTED
    subscription.reason = reason.strip()
    subscription.decided_by = actor.user if getattr(actor.user, "pk", None) else None
    subscription.decided_at = timezone.now()
    subscription.save()
    _audit_subscription(
        actor=actor,
        action="subscription.decided",
        target=subscription,
        approved=approve,
        reason=subscription.reason,
    )
    transaction.on_commit(lambda: _mail_requester(subscription))
    return subscription


def _audit_subscription(*, actor: Actor, action: str, target: Subscription, **data) -> None:
    """Both sides see a subscription's history: the subscriber's and the product's tenant."""
    tenants = {target.application.tenant_id: target.application.tenant}
    if target.product.owner_id is not None:
        tenants.setdefault(target.product.owner_id, target.product.owner)
    for tenant in tenants.values():
        audit(actor=actor, tenant=tenant, action=action, target=target, **data)


def _mail_requester(sub: Subscription) -> None:
    if sub.requested_by is None or not sub.requested_by.email:
        return
    verdict = "approved" if sub.status == Subscription.Status.ACTIVE else "rejected"
    body = f"Your subscription of {sub.application} to {sub.product} was {verdict}."
    if sub.reason:
        body += f"\nReason: {sub.reason}"
    send_mail(f"Subscription {verdict}: {sub.product}", body, None, [sub.requested_by.email])


# target status -> the statuses it may be reached from
STATUS_CHANGES = {
    Subscription.Status.SUSPENDED: frozenset({Subscription.Status.ACTIVE}),
    Subscription.Status.ACTIVE: frozenset({Subscription.Status.SUSPENDED}),
    Subscription.Status.REVOKED: frozenset(
        {Subscription.Status.ACTIVE, Subscription.Status.SUSPENDED, Subscription.Status.PENDING}
    ),
}


@transaction.atomic
def subscription_set_status(
    *, actor: Actor, subscription: Subscription, status: str, reason: str = ""
) -> Subscription:
    """Suspend, resume or revoke an active subscription (the product's approvers)."""
    if status not in STATUS_CHANGES:
        raise ServiceError(f"Can't set a subscription to '{status}'.")
    owner_side = actor.user is None or access.may_decide(actor.user, subscription.product)
    own_app = actor.user is not None and access.can(
        actor.user, subscription.application.tenant, "subscription.request"
    )
    # The subscriber may cancel its own subscription; only the owner side suspends or resumes.
    if not owner_side and not (own_app and status == Subscription.Status.REVOKED):
        raise access.Denied("Only the product's admins (or the operator) change this subscription.")
    if subscription.status in (Subscription.Status.REVOKED, Subscription.Status.REJECTED):
        raise ServiceError("This subscription has ended; request a new one.")
    allowed_from = STATUS_CHANGES[status]
    if subscription.status not in allowed_from:
        raise ServiceError(
            f"A {subscription.status} subscription can't become {status}; "
            f"only a {' or '.join(sorted(allowed_from))} one can."
        )
    subscription.status, subscription.reason = status, reason.strip()
    subscription.save(update_fields=["status", "reason"])
    _audit_subscription(
        actor=actor,
        action=f"subscription.{status}",
        target=subscription,
        reason=subscription.reason,
    )
    return subscription


# --- personal access tokens ------------------------------------------------------


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


# --- products ----------------------------------------------------------------------


PRODUCT_FIELDS = (
    "name",
    "description",
    "kind",
    "visibility",
    "approval_required",
    "status",
    "sunset_date",
)


def _check_product(actor: Actor, owner: Tenant | None) -> None:
    if actor.user is None:
        return
    if owner is None and not getattr(actor.user, "is_staff", False):
        raise access.Denied("Only the operator manages model products.")
    if owner is not None:
        access.require(actor.user, owner, "product.manage")


@transaction.atomic
def product_create(
    *,
    actor: Actor,
    owner: Tenant | None,
    name: str,
    slug: str | None = None,
    models: list[str] | None = None,
    **fields,
) -> Product:
    from gateway.models import LanguageModel

    _check_product(actor, owner)
    slug = slugify(slug or name)[:50]
    if not slug or Product.objects.filter(slug=slug).exists():
        raise ServiceError(f"The product slug '{slug}' is taken or empty.")
    unknown = {k for k in fields if k not in PRODUCT_FIELDS}
    if unknown:
        raise ServiceError(f"Unknown product field(s): {', '.join(sorted(unknown))}.")
    product = Product.objects.create(owner=owner, name=name, slug=slug, **fields)
    if models:
        found = list(LanguageModel.objects.filter(name__in=models))
        missing = set(models) - {m.name for m in found}
        if missing:
            raise ServiceError(f"Unknown model(s): {', '.join(sorted(missing))}.")
        product.language_models.set(found)
    audit(actor=actor, tenant=owner, action="product.created", target=product)
    return product


@transaction.atomic
def product_update(*, actor: Actor, product: Product, **fields) -> Product:
    _check_product(actor, product.owner)
    unknown = {k for k in fields if k not in PRODUCT_FIELDS}
    if unknown:
        raise ServiceError(f"Unknown product field(s): {', '.join(sorted(unknown))}.")
    for key, value in fields.items():
        setattr(product, key, value)
    product.save()
    audit(
        actor=actor,
        tenant=product.owner,
        action="product.updated",
        target=product,
        fields=sorted(fields),
    )
    return product


@transaction.atomic
def personal_token_revoke(*, actor: Actor, token: PersonalAccessToken) -> None:
    if actor.user is not None and token.user_id != getattr(actor.user, "pk", None):
        raise access.Denied("Only its owner revokes a personal access token.")
    changed = PersonalAccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if changed:
        audit(actor=actor, tenant=None, action="token.revoked", target=token)

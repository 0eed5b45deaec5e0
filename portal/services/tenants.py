"""Tenants and their members: creation, invitations, roles."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.models import (
    Invitation,
    Membership,
    Role,
    Tenant,
)
from portal.services.common import (
    Actor,
    ServiceError,
    _check,
    audit,
)


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

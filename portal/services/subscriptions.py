"""Subscriptions: request, decision, suspension and revocation, with mail to both sides."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from portal import access
from portal.models import (
    Application,
    Product,
    Role,
    Subscription,
)
from portal.services.common import (
    Actor,
    ServiceError,
    _check,
    audit,
)


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

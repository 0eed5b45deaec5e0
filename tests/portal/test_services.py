"""The permission matrix and the audit trail, through the services."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import PermissionDenied

from portal import access, services
from portal.models import AuditEvent, Membership, Role
from portal.services import SYSTEM, Actor, ServiceError

pytestmark = pytest.mark.django_db

ROLES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER]


def user(name, **extra):
    return get_user_model().objects.create_user(
        name, f"{name}@example.com", "pw-123456789", **extra
    )


@pytest.fixture
def tenant():
    return services.tenant_create(actor=Actor(user("founder")), name="Acme")


def member(tenant, role):
    person = user(f"{role}-person")
    Membership.objects.create(user=person, tenant=tenant, role=role)
    return Actor(person, "203.0.113.9")


def attempt(action, actor, tenant):
    """Each write the matrix governs, performed through its service."""
    app = services.application_create(actor=SYSTEM, tenant=tenant, name=f"app-{action}")
    key = services.api_key_create(tenant=tenant, name="k", application=app).api_key
    target = Membership.objects.filter(
        tenant=tenant, role=Role.VIEWER
    ).first() or Membership.objects.create(
        user=user(f"target-{action}"), tenant=tenant, role=Role.VIEWER
    )
    product = services.product_create(
        actor=SYSTEM, owner=tenant, name=f"p-{action}", status="published", approval_required=True
    )
    acts = {
        "application.manage": lambda: services.application_create(
            actor=actor, tenant=tenant, name="x"
        ),
        "key.manage": lambda: services.api_key_revoke(actor=actor, api_key=key),
        "subscription.request": lambda: services.subscription_request(
            actor=actor, application=app, product=product
        ),
        "tenant.manage_members": lambda: services.invitation_create(
            actor=actor, tenant=tenant, email="new@example.com", role=Role.DEVELOPER
        ),
        "product.manage": lambda: services.product_update(
            actor=actor, product=product, description="d"
        ),
        "subscription.decide": lambda: services.subscription_decide(
            actor=actor,
            subscription=services.subscription_request(
                actor=SYSTEM, application=app, product=product
            ),
            approve=True,
        ),
        "tenant.transfer_ownership": lambda: services.membership_set_role(
            actor=actor, membership=target, role=Role.OWNER
        ),
    }
    acts[action]()


WRITE_ACTIONS = [
    "application.manage",
    "key.manage",
    "subscription.request",
    "tenant.manage_members",
    "product.manage",
    "subscription.decide",
    "tenant.transfer_ownership",
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", WRITE_ACTIONS)
def test_every_role_against_every_write(tenant, role, action):
    actor = member(tenant, role)
    allowed = role in access.MATRIX[action]

    if allowed:
        attempt(action, actor, tenant)
    else:
        with pytest.raises(access.Denied):
            attempt(action, actor, tenant)


def test_outsiders_and_operators(tenant):
    outsider = user("mallory")
    operator = user("op", is_staff=True)

    assert not any(access.can(outsider, tenant, a) for a in access.ACTIONS)
    assert all(access.can(operator, tenant, a) for a in access.ACTIONS)


def test_acts_are_audited_with_actor_and_ip(tenant):
    actor = member(tenant, Role.ADMIN)
    app = services.application_create(actor=actor, tenant=tenant, name="bot")
    issued = services.api_key_create(actor=actor, tenant=tenant, name="k", application=app)
    services.api_key_rotate(actor=actor, api_key=issued.api_key, grace=timedelta(hours=1))
    services.api_key_revoke(actor=actor, api_key=issued.api_key)
    services.invitation_create(actor=actor, tenant=tenant, email="x@example.com", role=Role.VIEWER)

    events = AuditEvent.objects.filter(actor=actor.user).order_by("id")
    assert [e.action for e in events] == [
        "application.created",
        "key.created",
        "key.rotated",
        "key.revoked",
        "member.invited",
    ]
    assert {e.source_ip for e in events} == {"203.0.113.9"}
    assert {e.tenant_id for e in events} == {tenant.pk}


def test_audit_log_is_append_only(tenant):
    event = AuditEvent.objects.first()
    event.action = "tampered"
    with pytest.raises(PermissionDenied):
        event.save()
    with pytest.raises(PermissionDenied):
        event.delete()


def test_the_last_owner_stays(tenant):
    owner = Membership.objects.get(tenant=tenant, role=Role.OWNER)
    with pytest.raises(ServiceError, match="at least one owner"):
        services.membership_set_role(actor=Actor(owner.user), membership=owner, role=Role.ADMIN)


def test_pending_subscription_mails_the_approvers_and_the_decision_mails_the_requester(
    tenant, django_capture_on_commit_callbacks
):
    admin = member(tenant, Role.ADMIN)
    dev = member(tenant, Role.DEVELOPER)
    product = services.product_create(
        actor=admin, owner=tenant, name="Sentiment", status="published", approval_required=True
    )
    app = services.application_create(actor=dev, tenant=tenant, name="crm")

    with django_capture_on_commit_callbacks(execute=True):
        sub = services.subscription_request(actor=dev, application=app, product=product)
    assert admin.user.email in mail.outbox[-1].to

    with pytest.raises(ServiceError, match="why"):
        services.subscription_decide(actor=admin, subscription=sub, approve=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.subscription_decide(actor=admin, subscription=sub, approve=False, reason="Use v2")
    assert mail.outbox[-1].to == [dev.user.email] and "Use v2" in mail.outbox[-1].body


def test_private_and_draft_products_take_no_outside_subscriptions(tenant):
    other = services.tenant_create(actor=SYSTEM, name="Other")
    app = services.application_create(actor=SYSTEM, tenant=other, name="a")
    private = services.product_create(
        actor=SYSTEM, owner=tenant, name="Mine", status="published", visibility="private"
    )
    draft = services.product_create(actor=SYSTEM, owner=tenant, name="Soon")

    for product in (private, draft):
        with pytest.raises(ServiceError):
            services.subscription_request(actor=SYSTEM, application=app, product=product)

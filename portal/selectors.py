"""Reads of portal objects."""

from __future__ import annotations

from portal import access
from portal.models import ApiKey, Product, Subscription, Tenant

SESSION_TENANT = "portal_tenant"


def api_key_by_secret_hash(*, secret_hash: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("tenant", "application")
        .filter(secret_hash=secret_hash)
        .first()
    )


def models_granted_to_key(*, key: ApiKey) -> frozenset[str]:
    """Models a key may call: granted directly, or through its application's subscriptions."""
    names = set(key.allowed_models or ())
    if key.application_id is not None:
        from gateway.models import LanguageModel

        subscribed = LanguageModel.objects.filter(
            products__subscriptions__application_id=key.application_id,
            products__subscriptions__status=Subscription.Status.ACTIVE,
            products__status__in=[Product.Status.PUBLISHED, Product.Status.DEPRECATED],
        )
        names.update(subscribed.values_list("name", flat=True))
    return frozenset(names)


def models_without_bodies(*, key: ApiKey) -> frozenset[str]:
    """Models the key calls through a subscribed product that keeps no call bodies."""
    if key.application_id is None:
        return frozenset()
    from gateway.models import LanguageModel

    quiet = LanguageModel.objects.filter(
        products__subscriptions__application_id=key.application_id,
        products__subscriptions__status=Subscription.Status.ACTIVE,
        products__log_bodies=False,
    )
    return frozenset(quiet.values_list("name", flat=True))


def products_subscribed_by_key(*, key: ApiKey) -> frozenset[int]:
    if key.application_id is None:
        return frozenset()
    active = Subscription.objects.filter(
        application_id=key.application_id, status=Subscription.Status.ACTIVE
    )
    return frozenset(active.values_list("product_id", flat=True))


def tenants_for_user(*, user):
    return access.tenants_of(user).order_by("name")


def current_tenant(*, request, tenants: list[Tenant]) -> Tenant | None:
    wanted = request.session.get(SESSION_TENANT)
    for tenant in tenants:
        if tenant.slug == wanted:
            return tenant
    return tenants[0] if tenants else None


def pending_approvals_count(*, user) -> int:
    pending = access.subscriptions_visible_to(user).filter(status=Subscription.Status.PENDING)
    return sum(
        1 for sub in pending.select_related("product") if access.may_decide(user, sub.product)
    )

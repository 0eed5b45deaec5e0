"""The permission matrix, in one place, and the doors through which objects are reached.

Views, the REST API and the gateway all ask `can()`; objects are reached only through the
`access_*` functions, which answer 404 for another tenant's objects so ids reveal nothing.
"""

from __future__ import annotations

from django.http import Http404

from portal.models import ApiKey, Application, Membership, Product, Role, Subscription, Tenant

# action -> the roles that may perform it within their tenant
MATRIX: dict[str, frozenset[str]] = {
    "tenant.view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "tenant.manage_members": frozenset({Role.OWNER, Role.ADMIN}),
    "tenant.transfer_ownership": frozenset({Role.OWNER}),
    "application.view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "application.manage": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "key.view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "key.manage": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "subscription.view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "subscription.request": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "subscription.decide": frozenset({Role.OWNER, Role.ADMIN}),
    "product.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "audit.view": frozenset({Role.OWNER, Role.ADMIN}),
    "usage.view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "budget.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "prompt.manage": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "cache.purge": frozenset({Role.OWNER, Role.ADMIN}),
    "guardrail.manage": frozenset({Role.OWNER, Role.ADMIN}),
}
ACTIONS = tuple(MATRIX)


class Denied(Exception):
    """The actor is known to the tenant but lacks the role: 403, not 404."""


def role_in(user, tenant: Tenant) -> str | None:
    if not user.is_authenticated:
        return None
    membership = Membership.objects.filter(user=user, tenant=tenant).only("role").first()
    return membership.role if membership else None


def can(user, tenant: Tenant | None, action: str) -> bool:
    """May `user` do `action` in `tenant`? Operators (staff) may do everything."""
    if action not in MATRIX:
        raise KeyError(action)
    if getattr(user, "is_staff", False):
        return True
    if tenant is None:
        return False
    return role_in(user, tenant) in MATRIX[action]


def require(user, tenant: Tenant | None, action: str) -> None:
    if not can(user, tenant, action):
        raise Denied(f"Your role does not allow {action}.")


def tenants_of(user):
    if user.is_staff:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)


def access_tenant_by_slug(user, slug: str) -> Tenant:
    tenant = tenants_of(user).filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant


def access_application_by_id(user, app_id: int) -> Application:
    app = Application.objects.filter(pk=app_id, tenant__in=tenants_of(user)).first()
    if app is None:
        raise Http404("No such application.")
    return app


def access_api_key_by_id(user, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(pk=key_id, tenant__in=tenants_of(user)).first()
    if key is None:
        raise Http404("No such key.")
    return key


def products_visible_to(user):
    """Published-or-later public products, plus every product of the user's tenants."""
    from django.db.models import Q

    if user.is_staff:
        return Product.objects.all()
    mine = Q(owner__in=tenants_of(user))
    public = Q(visibility=Product.Visibility.PUBLIC) & ~Q(status=Product.Status.DRAFT)
    return Product.objects.filter(mine | public)


def access_product_by_slug(user, slug: str) -> Product:
    product = products_visible_to(user).filter(slug=slug).first()
    if product is None:
        raise Http404("No such product.")
    return product


def may_decide(user, product: Product) -> bool:
    """Approvers: admins and owners of the product's tenant; the operator for model products."""
    if user.is_staff:
        return True
    return product.owner is not None and can(user, product.owner, "subscription.decide")


def subscriptions_visible_to(user):
    from django.db.models import Q

    if user.is_staff:
        return Subscription.objects.all()
    tenants = tenants_of(user)
    return Subscription.objects.filter(
        Q(application__tenant__in=tenants) | Q(product__owner__in=tenants)
    )


def access_subscription_by_id(user, sub_id: int) -> Subscription:
    sub = subscriptions_visible_to(user).filter(pk=sub_id).first()
    if sub is None:
        raise Http404("No such subscription.")
    return sub

"""Guardrail policies (gateway.models.GuardrailPolicy): checks the gateway runs on what a
request sends and on what the model answers.

Who sets a policy: the operator (staff) any, and alone the operator-scoped ones (the floor
every request gets); a tenant's owners and admins (`guardrail.manage`) the tenant's policy,
the policies of the tenant's keys and those of the products the tenant owns. The gateway
picks a change up at its next catalog refresh. A policy set here is no longer `from_config`:
a later `apply_config` that names the same (scope, name) takes it over again.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import Q
from django.http import Http404

from gateway.guardrails.policy import validate
from gateway.models import GuardrailPolicy
from portal import access
from portal.models import ApiKey, Product, Tenant
from portal.services.common import Actor, ServiceError, audit

SCOPES = tuple(GuardrailPolicy.Scope.values)
OWNER_FIELD = {"operator": None, "tenant": "tenant", "product": "product", "key": "api_key"}
NAME = re.compile(r"[-a-zA-Z0-9_]+")
NAME_MAX = 100


class GuardrailInvalid(ServiceError):
    """Field -> what is wrong with it (a list of messages); the message names every field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(" ".join(m for messages in errors.values() for m in messages))


# --- reads ---------------------------------------------------------------------------


def guardrail_policies_visible_to(user):
    """Staff: all. Others: the operator's floor (it applies to their requests), and the
    policies of their tenants, of their tenants' keys and of the products they own."""
    if user.is_staff:
        return GuardrailPolicy.objects.all()
    tenants = access.tenants_of(user)
    return GuardrailPolicy.objects.filter(
        Q(scope=GuardrailPolicy.Scope.OPERATOR)
        | Q(scope=GuardrailPolicy.Scope.TENANT, tenant__in=tenants)
        | Q(scope=GuardrailPolicy.Scope.KEY, api_key__tenant__in=tenants)
        | Q(scope=GuardrailPolicy.Scope.PRODUCT, product__owner__in=tenants)
    )


def access_guardrail_policy_by_id(user, policy_id: int) -> GuardrailPolicy:
    policy = (
        guardrail_policies_visible_to(user)
        .select_related("tenant", "product__owner", "api_key__tenant")
        .filter(pk=policy_id)
        .first()
    )
    if policy is None:
        raise Http404("No such guardrail policy.")
    return policy


def policy_tenant(policy: GuardrailPolicy) -> Tenant | None:
    """The tenant a policy belongs to: None for the operator's and the operator's products."""
    if policy.scope == GuardrailPolicy.Scope.TENANT:
        return policy.tenant
    if policy.scope == GuardrailPolicy.Scope.KEY:
        return policy.api_key.tenant if policy.api_key else None
    if policy.scope == GuardrailPolicy.Scope.PRODUCT:
        return policy.product.owner if policy.product else None
    return None


def may_manage_guardrails(user, scope: str, tenant: Tenant | None) -> bool:
    """May `user` set a policy of `scope` whose owner belongs to `tenant`?"""
    if getattr(user, "is_staff", False):
        return True
    if scope == GuardrailPolicy.Scope.OPERATOR or tenant is None:
        return False
    return access.can(user, tenant, "guardrail.manage")


# --- writes --------------------------------------------------------------------------


def _check_manager(actor: Actor, scope: str, tenant: Tenant | None) -> None:
    if actor.user is None or may_manage_guardrails(actor.user, scope, tenant):
        return
    if scope == GuardrailPolicy.Scope.OPERATOR:
        raise access.Denied("Only the operator sets operator guardrail policies.")
    if tenant is None:
        raise access.Denied("Only the operator sets the guardrails of the operator's products.")
    raise access.Denied("Your role does not allow guardrail.manage.")


def _owner_errors(scope, owners: dict, errors: dict[str, list[str]]) -> None:
    wanted = OWNER_FIELD.get(scope)
    for field, value in owners.items():
        if field == wanted and value is None:
            errors.setdefault(field, []).append(f"A {scope} policy needs its {field}.")
        elif field != wanted and value is not None:
            kind = field.replace("api_", "")
            errors.setdefault(field, []).append(f"{field} is only for {kind}-scoped policies.")


def _owner_tenant(scope: str, owners: dict) -> Tenant | None:
    if scope == GuardrailPolicy.Scope.TENANT:
        return owners["tenant"]
    if scope == GuardrailPolicy.Scope.PRODUCT:
        return owners["product"].owner
    if scope == GuardrailPolicy.Scope.KEY:
        return owners["api_key"].tenant
    return None


@transaction.atomic
def guardrail_policy_set(
    *,
    actor: Actor,
    scope: str,
    name: str,
    checks,
    tenant: Tenant | None = None,
    product: Product | None = None,
    api_key: ApiKey | None = None,
    enabled: bool = True,
) -> GuardrailPolicy:
    """Create the policy (scope, name) or change the one there is; `checks` is a list of
    checks or "default" (the preset). A name is unique within its scope: a policy of that
    name that belongs to another owner is not taken over."""
    owners = {"tenant": tenant, "product": product, "api_key": api_key}
    errors: dict[str, list[str]] = {}
    if scope not in SCOPES:
        errors["scope"] = [f"scope must be one of {', '.join(SCOPES)}."]
    _owner_errors(scope, owners, errors)
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > NAME_MAX:
        errors["name"] = [f"name must be 1 to {NAME_MAX} letters, digits, hyphens or underscores."]
    problems = validate(checks)
    if problems:
        errors["checks"] = problems
    if not isinstance(enabled, bool):
        errors["enabled"] = ["enabled must be true or false."]
    if errors.keys() - {"checks", "name", "enabled"}:
        raise GuardrailInvalid(errors)  # no owner to check permissions against
    _check_manager(actor, scope, _owner_tenant(scope, owners))
    if errors:
        raise GuardrailInvalid(errors)
    # get_or_create: a concurrent first set of the same policy finds it rather than failing.
    policy, created = GuardrailPolicy.objects.select_for_update().get_or_create(
        scope=scope, name=name, defaults={**owners, "checks": checks}
    )
    if not created and (policy.tenant, policy.product, policy.api_key) != (
        tenant,
        product,
        api_key,
    ):
        raise GuardrailInvalid(
            {"name": [f"A {scope} policy named '{name}' already exists for another owner."]}
        )
    policy.checks = checks
    policy.enabled = enabled
    policy.from_config = False
    policy.save()
    audit(
        actor=actor,
        tenant=_owner_tenant(scope, owners),
        action="guardrail_policy.created" if created else "guardrail_policy.changed",
        target=policy,
        scope=scope,
        name=name,
        owner=_owner_label(policy),
        checks=checks,
        enabled=enabled,
    )
    return policy


@transaction.atomic
def guardrail_policy_delete(*, actor: Actor, policy: GuardrailPolicy) -> None:
    tenant = policy_tenant(policy)
    _check_manager(actor, policy.scope, tenant)
    audit(
        actor=actor,
        tenant=tenant,
        action="guardrail_policy.deleted",
        target=policy,
        scope=policy.scope,
        name=policy.name,
        owner=_owner_label(policy),
    )
    policy.delete()


def _owner_label(policy: GuardrailPolicy) -> str | int | None:
    if policy.scope == GuardrailPolicy.Scope.TENANT:
        return policy.tenant.slug
    if policy.scope == GuardrailPolicy.Scope.PRODUCT:
        return policy.product.slug
    if policy.scope == GuardrailPolicy.Scope.KEY:
        return policy.api_key_id
    return None

"""Response cache policies (gateway.models.CachePolicy) and purging a tenant's cached answers.

Who sets a policy: the operator (staff) for operator-wide policies (no product) and for the
operator's products; a tenant's owners and admins (`product.manage`) for the tenant's own
products. The gateway picks a change up at its next catalog refresh
(GATEWAY_CATALOG_CACHE_SECONDS). A policy set here is no longer `from_config`: a later
`apply_config` that names the same model takes it over again.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Q
from django.http import Http404

from gateway.cache.policy import CACHEABLE, MAX_TTL_SECONDS, MODES, SCOPES
from gateway.models import CachePolicy, LanguageModel
from portal import access
from portal.models import Product, Tenant
from portal.services.common import Actor, ServiceError, _check, audit

log = logging.getLogger(__name__)

FIELDS = (
    "mode",
    "cacheable",
    "scope",
    "ttl_seconds",
    "similarity_threshold",
    "max_entries",
    "embedding_model",
    "hit_price_usd",
)
MAX_ENTRIES = 1_000_000
MAX_HIT_PRICE = Decimal(1000)  # as the config's `hit_price`
PRICE_PLACES = 6  # CachePolicy.hit_price_usd


class PolicyInvalid(ServiceError):
    """Field -> what is wrong with it; the message names every field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(" ".join(errors.values()))


class PurgeFailed(Exception):
    """The cache store could not be reached: nothing the caller did wrong (503)."""


# --- reads ---------------------------------------------------------------------------


def cache_policies_visible_to(user):
    """Staff: all. Others: operator-wide policies, those of the operator's products they see,
    and those of their tenants' products."""
    if user.is_staff:
        return CachePolicy.objects.all()
    operator_products = access.products_visible_to(user).filter(owner__isnull=True)
    return CachePolicy.objects.filter(
        Q(product__isnull=True)
        | Q(product__in=operator_products)
        | Q(product__owner__in=access.tenants_of(user))
    )


def access_cache_policy_by_id(user, policy_id: int) -> CachePolicy:
    policy = (
        cache_policies_visible_to(user)
        .select_related("product__owner")
        .filter(pk=policy_id)
        .first()
    )
    if policy is None:
        raise Http404("No such cache policy.")
    return policy


def may_manage_cache(user, product: Product | None) -> bool:
    if getattr(user, "is_staff", False):
        return True
    return (
        product is not None
        and product.owner is not None
        and access.can(user, product.owner, "product.manage")
    )


# --- writes --------------------------------------------------------------------------


def _check_manager(actor: Actor, product: Product | None) -> None:
    if actor.user is None or may_manage_cache(actor.user, product):
        return
    if product is None:
        raise access.Denied("Only the operator sets operator-wide cache policies.")
    if product.owner is None:
        raise access.Denied("Only the operator manages the cache of model products.")
    raise access.Denied("Your role does not allow product.manage.")


def _whole(value, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _clean(fields: dict, errors: dict[str, str]) -> dict:
    """The fields, checked; what is wrong goes into `errors`, by field."""
    clean: dict = {}
    for name in sorted(set(fields) - set(FIELDS)):
        errors[name] = f"{name} is not a cache policy field."
    for name, choices in (("mode", MODES), ("cacheable", CACHEABLE), ("scope", SCOPES)):
        if name in fields:
            if fields[name] in choices:
                clean[name] = fields[name]
            else:
                errors[name] = f"{name} must be one of {', '.join(choices)}."
    if "ttl_seconds" in fields:
        clean["ttl_seconds"] = _whole(fields["ttl_seconds"], 1, MAX_TTL_SECONDS)
        if clean["ttl_seconds"] is None:
            errors["ttl_seconds"] = (
                f"ttl_seconds must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}."
            )
    if "max_entries" in fields:
        clean["max_entries"] = _whole(fields["max_entries"], 1, MAX_ENTRIES)
        if clean["max_entries"] is None:
            errors["max_entries"] = f"max_entries must be a whole number from 1 to {MAX_ENTRIES}."
    if "similarity_threshold" in fields:
        value = fields["similarity_threshold"]
        if value is None:
            clean["similarity_threshold"] = None
        elif not isinstance(value, bool) and isinstance(value, int | float) and 0 < value <= 1:
            clean["similarity_threshold"] = float(value)
        else:
            errors["similarity_threshold"] = (
                "similarity_threshold must be a number above 0 and at most 1, "
                "or empty for the default."
            )
    if "embedding_model" in fields:
        name = fields["embedding_model"]
        name = "" if name is None else name
        if not isinstance(name, str):
            name = None
        elif (
            name
            and not LanguageModel.objects.filter(name=name, enabled=True, mode="embedding").exists()
        ):
            name = None
        if name is None:
            errors["embedding_model"] = (
                "embedding_model must be an enabled embedding model, or empty for the local one."
            )
        else:
            clean["embedding_model"] = name
    if "hit_price_usd" in fields:
        clean["hit_price_usd"] = _price(fields["hit_price_usd"])
        if clean["hit_price_usd"] is False:
            errors["hit_price_usd"] = (
                f"hit_price_usd must be dollars per hit from 0 to below {MAX_HIT_PRICE}, "
                f"with at most {PRICE_PLACES} decimal places, or empty for no charge."
            )
    return clean


def _price(value) -> Decimal | None | bool:
    """The price, None for none, False when it is not a price."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return False
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        return False
    if not price.is_finite() or not 0 <= price < MAX_HIT_PRICE:
        return False
    if price != price.quantize(Decimal(1).scaleb(-PRICE_PLACES)):
        return False  # the column keeps 6 places: more would be rounded away unseen
    return price


def _model_name(product: Product | None, model_name, errors: dict[str, str]) -> str:
    """A product's policy names one of its models; an operator-wide one any known model."""
    if not isinstance(model_name, str):
        errors["model_name"] = "model_name must be a model's name, or empty for every model."
        return ""
    name = model_name.strip()
    if not name:
        return ""
    if product is not None:
        if not product.language_models.filter(name=name).exists():
            errors["model_name"] = f"model_name '{name[:200]}' is not one of the product's models."
    elif not LanguageModel.objects.filter(name=name).exists():
        errors["model_name"] = f"model_name '{name[:200]}' is not a known model."
    return name


@transaction.atomic
def cache_policy_set(
    *, actor: Actor, product: Product | None, model_name: str = "", **fields
) -> CachePolicy:
    """Create the policy of (product, model_name), or change the one there is. Fields left
    out keep their current values (the defaults, for a new policy); `similarity_threshold`
    and `hit_price_usd` may be None (the default threshold; no charge for a hit)."""
    _check_manager(actor, product)
    errors: dict[str, str] = {}
    name = _model_name(product, model_name, errors)
    clean = _clean(fields, errors)
    if errors:
        raise PolicyInvalid(errors)
    # get_or_create: a concurrent first set of the same policy finds it rather than failing.
    policy, created = CachePolicy.objects.select_for_update().get_or_create(
        product=product, model_name=name
    )
    for key, value in clean.items():
        setattr(policy, key, value)
    policy.from_config = False
    policy.save()
    audit(
        actor=actor,
        tenant=product.owner if product is not None else None,
        action="cache_policy.created" if created else "cache_policy.changed",
        target=policy,
        product=product.slug if product is not None else None,
        model_name=name,
        fields=sorted(clean),
    )
    return policy


@transaction.atomic
def cache_policy_delete(*, actor: Actor, policy: CachePolicy) -> None:
    product = policy.product
    _check_manager(actor, product)
    audit(
        actor=actor,
        tenant=product.owner if product is not None else None,
        action="cache_policy.deleted",
        target=policy,
        product=product.slug if product is not None else None,
        model_name=policy.model_name,
    )
    policy.delete()


def cache_purge(*, actor: Actor, tenant: Tenant) -> int:
    """Drop every cached answer of the tenant, in every gateway process; returns how many
    records (entries and semantic logs) went."""
    from gateway.cache import service

    _check(actor, tenant, "cache.purge")
    try:
        removed = async_to_sync(service.purge)(tenant.pk)
    except Exception as exc:  # noqa: BLE001 - any store failure: nothing was purged
        log.warning("cache purge of tenant %s failed: %r", tenant.pk, exc)
        raise PurgeFailed("The cache store can't be reached; nothing was purged.") from exc
    audit(actor=actor, tenant=tenant, action="cache.purged", target=tenant, removed=removed)
    return removed

"""Products in the catalog: model products (the operator's) and tenants' APIs."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from portal import access
from portal.models import (
    Product,
    Tenant,
)
from portal.services.common import (
    Actor,
    ServiceError,
    audit,
)

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

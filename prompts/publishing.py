"""Publishing a prompt (through a label) or a chain as a catalog product: a REST API at
POST /api/p/{tenant}/{slug} that other tenants subscribe to like any product."""

from __future__ import annotations

import re

from django.db import transaction

from portal.models import Product, Tenant
from portal.services.common import SYSTEM, Actor, ServiceError, _check, audit
from portal.services.products import product_create
from prompts.models import Chain, Prompt, PromptApi
from prompts.services import version_for

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def api_path(api: PromptApi) -> str:
    return f"/api/p/{api.tenant.slug}/{api.slug}"


@transaction.atomic
def api_publish(
    *, actor: Actor = SYSTEM, tenant: Tenant, slug: str, name: str, prompt: Prompt | None = None,
    label: str = "production", chain: Chain | None = None, description: str = "",
    visibility: str = Product.Visibility.PUBLIC, approval_required: bool = True,
    status: str = Product.Status.PUBLISHED,
) -> PromptApi:  # fmt: skip
    """A new product of kind `prompt` whose calls run `prompt`@`label`, or `chain`."""
    _check(actor, tenant, "prompt.manage")
    if (prompt is None) == (chain is None):
        raise ServiceError("Publish either a prompt (with a label) or a chain.")
    if not SLUG.match(slug or "") or len(slug) > 100:
        raise ServiceError("The API slug takes lower-case letters, digits and single hyphens.")
    owned = prompt or chain
    if owned.tenant_id != tenant.pk:
        raise ServiceError("Only the tenant's own prompts and chains can be published.")
    if prompt is not None:
        version_for(prompt, label)  # the label must point somewhere already
    elif not chain.steps:
        raise ServiceError("The chain has no steps.")
    if PromptApi.objects.filter(tenant=tenant, slug=slug).exists():
        raise ServiceError(f"This tenant already publishes an API at '{slug}'.")
    product = product_create(
        actor=actor, owner=tenant, name=name, slug=f"{tenant.slug}-{slug}"[:50],
        description=description or owned.description, kind=Product.Kind.PROMPT,
        visibility=visibility, approval_required=approval_required, status=status,
    )  # fmt: skip
    api = PromptApi.objects.create(
        product=product, tenant=tenant, slug=slug, prompt=prompt,
        label=label if prompt is not None else "", chain=chain,
    )  # fmt: skip
    audit(actor=actor, tenant=tenant, action="prompt.published", target=api, path=api_path(api))
    return api


def api_retarget(*, actor: Actor = SYSTEM, api: PromptApi, label: str) -> PromptApi:
    """Serve another label of the same prompt (e.g. `staging` for a beta API)."""
    _check(actor, api.tenant, "prompt.manage")
    if api.prompt is None:
        raise ServiceError("A chain's API has no label.")
    version_for(api.prompt, label)
    api.label = label
    api.save(update_fields=["label"])
    audit(actor=actor, tenant=api.tenant, action="prompt.api_label", target=api, label=label)
    return api

"""The response cache in the portal: a product's policies (on its page, loaded with htmx, and
on a page of their own), the operator's policies, and a tenant's purge button.

portal.services.cache checks who may do what and audits; the forms here only check types,
and the service's field errors land on the same fields.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from gateway.cache.policy import MAX_TTL_SECONDS, Policy
from gateway.models import CachePolicy, LanguageModel
from portal import access, services
from portal.models import Product
from portal.services.cache import MAX_ENTRIES
from portal.views.common import actor, portal_view, tenant_page

EVERY_MODEL = ""


class CachePolicyForm(forms.Form):
    """What a product manager sets; the operator's form adds the semantic index's knobs."""

    model_name = forms.ChoiceField(label="Model", required=False)
    mode = forms.ChoiceField(
        label="Mode",
        choices=CachePolicy.Mode.choices,
        help_text="Exact: the same request. Exact and semantic: also a question asked alike.",
    )
    cacheable = forms.ChoiceField(label="Which requests", choices=CachePolicy.Cacheable.choices)
    scope = forms.ChoiceField(
        label="Shared within",
        choices=CachePolicy.Scope.choices,
        help_text="Answers are never shared beyond the calling tenant.",
    )
    ttl_seconds = forms.IntegerField(
        label="Time to live (seconds)", min_value=1, max_value=MAX_TTL_SECONDS
    )
    similarity_threshold = forms.FloatField(
        label="Similarity threshold",
        required=False,
        help_text="Semantic matches: above 0, at most 1. Empty: the default.",
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    hit_price_usd = forms.DecimalField(
        label="Price of a hit (USD)",
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=6,
        help_text="What a cached answer costs the caller. Empty: nothing.",
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )

    def __init__(self, *args, models: list[str], every: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model_name"].choices = [(EVERY_MODEL, every)] + [(m, m) for m in models]

    def service_fields(self) -> dict:
        fields = dict(self.cleaned_data)
        fields.pop("model_name")
        return fields


class OperatorCachePolicyForm(CachePolicyForm):
    max_entries = forms.IntegerField(
        label="Entries per semantic partition",
        min_value=1,
        max_value=MAX_ENTRIES,
        help_text="Past this, the oldest go.",
    )
    embedding_model = forms.ChoiceField(label="Embedding model", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        embedders = LanguageModel.objects.filter(enabled=True, mode="embedding").order_by("name")
        self.fields["embedding_model"].choices = [("", "The local MiniLM")] + [
            (m.name, m.name) for m in embedders
        ]


def _initial(policy: CachePolicy | None) -> dict:
    """The form, filled with a policy's values; a new one starts from the default."""
    if policy is None:
        default = Policy.default()
        return {
            "mode": default.mode,
            "cacheable": default.cacheable,
            "scope": default.scope,
            "ttl_seconds": default.ttl_seconds,
            "max_entries": default.max_entries,
        }
    initial = {name: getattr(policy, name) for name in OperatorCachePolicyForm.base_fields}
    initial["hit_price_usd"] = _usd(policy.hit_price_usd)
    return initial


def _usd(value) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _save(request, form: CachePolicyForm, product: Product | None) -> CachePolicy | None:
    """The policy the valid form sets, or None with the errors on the form."""
    if not form.is_valid():
        return None
    try:
        return services.cache_policy_set(
            actor=actor(request),
            product=product,
            model_name=form.cleaned_data["model_name"],
            **form.service_fields(),
        )
    except services.PolicyInvalid as exc:
        for field, message in exc.errors.items():
            form.add_error(field if field in form.fields else None, message)
    except services.ServiceError as exc:
        form.add_error(None, str(exc))
    return None


def _rows(policies) -> list[dict]:
    return [
        {"policy": p, "hit_price": _usd(p.hit_price_usd), "ttl": _duration(p.ttl_seconds)}
        for p in policies
    ]


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _default() -> dict:
    default = Policy.default()
    return {"default": default, "default_ttl": _duration(default.ttl_seconds)}


def _policy_in(queryset, value: str) -> CachePolicy | None:
    return queryset.filter(pk=int(value)).first() if value.isdigit() else None


# --- a product's policies -------------------------------------------------------------


def _product(request, slug: str) -> Product:
    """A product whose cache the user may see: the operator's, or one of their tenants'."""
    product = access.access_product_by_slug(request.user, slug)
    mine = product.owner is None or access.can(request.user, product.owner, "tenant.view")
    if not mine:
        raise access.Denied("Only the product's tenant sees its cache settings.")
    return product


def _product_models(product: Product) -> list[str]:
    models = product.language_models.exclude(mode="embedding").order_by("name")
    return list(models.values_list("name", flat=True))


def _product_form(product: Product, *args, **kwargs) -> CachePolicyForm:
    every = f"Every model of {product.name}"
    return CachePolicyForm(*args, models=_product_models(product), every=every, **kwargs)


def _product_page(request, product: Product, *, form=None, status: int = 200):
    can_manage = services.may_manage_cache(request.user, product)
    policies = product.cache_policies.order_by("model_name", "pk")
    if can_manage and form is None:
        editing = _policy_in(policies, request.GET.get("policy", ""))
        editing = editing or policies.filter(model_name="").first()
        form = _product_form(product, initial=_initial(editing))
    context = {
        "product": product,
        "rows": _rows(policies),
        "can_manage": can_manage,
        "form": form,
        **_default(),
    }
    template = "portal/_cache_product.html" if request.htmx else "portal/cache_product.html"
    return render(request, template, context, status=status)


@portal_view
def product_cache(request, slug):
    return _product_page(request, _product(request, slug))


@portal_view
@require_POST
def product_cache_save(request, slug):
    product = _product(request, slug)
    if not services.may_manage_cache(request.user, product):
        raise access.Denied("Only the product's owners and admins set its cache policy.")
    form = _product_form(product, request.POST)
    policy = _save(request, form, product)
    if policy is None:
        return _product_page(request, product, form=form, status=400)
    messages.success(request, f"Saved the cache policy: {_label(policy)}.")
    return redirect(reverse("portal:product_detail", args=[product.slug]) + "#response-cache")


def _label(policy: CachePolicy) -> str:
    model = policy.model_name or "every model"
    return f"{policy.get_mode_display().lower()} for {model}"


# --- the operator's policies -----------------------------------------------------------


def _require_operator(request) -> None:
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator sets operator-wide cache policies.")


def _operator_form(*args, **kwargs) -> OperatorCachePolicyForm:
    models = LanguageModel.objects.filter(enabled=True).exclude(mode="embedding").order_by("name")
    names = list(models.values_list("name", flat=True))
    return OperatorCachePolicyForm(*args, models=names, every="Every model (the default)", **kwargs)


def _operator_page(request, *, form=None, status: int = 200):
    operator_wide = CachePolicy.objects.filter(product=None).order_by("model_name", "pk")
    if form is None:
        editing = _policy_in(operator_wide, request.GET.get("policy", ""))
        form = _operator_form(initial=_initial(editing))
    products = (
        CachePolicy.objects.exclude(product=None)
        .select_related("product__owner")
        .order_by("product__name", "model_name", "pk")
    )
    context = {
        "rows": _rows(operator_wide),
        "product_rows": _rows(products),
        "form": form,
        **_default(),
    }
    return render(request, "portal/cache.html", context, status=status)


@portal_view
def operator_cache(request):
    _require_operator(request)
    return _operator_page(request)


@portal_view
@require_POST
def operator_cache_save(request):
    _require_operator(request)
    form = _operator_form(request.POST)
    policy = _save(request, form, None)
    if policy is None:
        return _operator_page(request, form=form, status=400)
    messages.success(request, f"Saved the operator's cache policy: {_label(policy)}.")
    return redirect("portal:cache")


@portal_view
@require_POST
def policy_remove(request, policy_id):
    policy = services.access_cache_policy_by_id(request.user, policy_id)
    product = policy.product
    label = _label(policy)
    services.cache_policy_delete(actor=actor(request), policy=policy)
    messages.success(request, f"Removed the cache policy: {label}.")
    if product is None:
        return redirect("portal:cache")
    return redirect(reverse("portal:product_detail", args=[product.slug]) + "#response-cache")


# --- a tenant's cache ------------------------------------------------------------------


@portal_view
def tenant_cache(request, slug):
    tenant = tenant_page(request, slug, "tenant.view")
    policies = (
        CachePolicy.objects.filter(product__owner=tenant)
        .select_related("product")
        .order_by("product__name", "model_name", "pk")
    )
    context = {
        "tenant": tenant,
        "rows": _rows(policies),
        "products": tenant.products.order_by("name"),
        "can_purge": access.can(request.user, tenant, "cache.purge"),
        "can_manage_products": access.can(request.user, tenant, "product.manage"),
        **_default(),
    }
    return render(request, "portal/cache_tenant.html", context)


@portal_view
@require_POST
def tenant_cache_purge(request, slug):
    tenant = tenant_page(request, slug, "cache.purge")
    try:
        removed = services.cache_purge(actor=actor(request), tenant=tenant)
    except services.PurgeFailed as exc:
        messages.error(request, str(exc))
    else:
        noun = "record" if removed == 1 else "records"
        messages.success(request, f"Purged the cached answers of {tenant.name}: {removed} {noun}.")
    return redirect("portal:tenant_cache", slug=tenant.slug)

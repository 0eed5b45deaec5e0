"""The catalog, product pages, subscribing and cancelling, the approvals queue."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal import access, forms, services
from portal.models import Subscription
from portal.views.common import actor, current_tenant, fail, paginate, portal_view

# --- catalog and subscriptions -------------------------------------------------------


@portal_view
def catalog(request):
    products = access.products_visible_to(request.user).select_related("owner").order_by("name")
    return render(request, "portal/catalog.html", {"page": paginate(request, products)})


def _subscribable_apps(request, tenant):
    if tenant is None or not access.can(request.user, tenant, "subscription.request"):
        return None
    return tenant.applications.order_by("name")


@portal_view
def product_detail(request, slug):
    product = access.access_product_by_slug(request.user, slug)
    tenant = current_tenant(request)
    apps = _subscribable_apps(request, tenant)
    models = list(product.language_models.order_by("name"))
    subscriptions = []
    if tenant is not None:
        subscriptions = product.subscriptions.filter(application__tenant=tenant).select_related(
            "application"
        )
    context = {
        "product": product,
        "tenant": tenant,
        "models": models,
        "example_model": models[0].name if models else "MODEL_NAME",
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "subscriptions": subscriptions,
        "form": forms.SubscribeForm(applications=apps) if apps is not None else None,
        "has_apps": apps is not None and apps.exists(),
    }
    return render(request, "portal/product_detail.html", context)


@portal_view
@require_POST
def subscribe(request, slug):
    product = access.access_product_by_slug(request.user, slug)
    back = reverse("portal:product_detail", kwargs={"slug": product.slug})
    tenant = current_tenant(request)
    if tenant is None:
        return fail(request, "Create a tenant and an application first.", back)
    form = forms.SubscribeForm(request.POST, applications=tenant.applications.all())
    if not form.is_valid():
        return fail(request, "Choose one of your applications.", back)
    app = access.access_application_by_id(request.user, form.cleaned_data["application"].pk)
    try:
        sub = services.subscription_request(actor=actor(request), application=app, product=product)
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    if sub.status == Subscription.Status.PENDING:
        messages.info(request, f"{app.name} requested {product.name}: waiting for approval.")
    else:
        messages.success(request, f"{app.name} is subscribed to {product.name}.")
    return redirect(back)


@portal_view
@require_POST
def subscription_cancel(request, sub_id):
    sub = access.access_subscription_by_id(request.user, sub_id)
    back = reverse("portal:application_detail", kwargs={"app_id": sub.application_id})
    try:
        services.subscription_set_status(
            actor=actor(request), subscription=sub, status=Subscription.Status.REVOKED
        )
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    messages.success(request, f"Subscription to {sub.product.name} cancelled.")
    return redirect(back)


@portal_view
def approvals(request):
    pending = (
        access.subscriptions_visible_to(request.user)
        .filter(status=Subscription.Status.PENDING)
        .select_related("product", "product__owner", "application__tenant", "requested_by")
        .order_by("created_at", "id")
    )
    mine = [sub for sub in pending if access.may_decide(request.user, sub.product)]
    return render(request, "portal/approvals.html", {"page": paginate(request, mine)})


@portal_view
@require_POST
def approval_decide(request, sub_id):
    sub = access.access_subscription_by_id(request.user, sub_id)
    back = reverse("portal:approvals")
    form = forms.DecisionForm(request.POST)
    if not form.is_valid():
        return fail(request, "Choose Approve or Reject.", back)
    approve = form.cleaned_data["decision"] == "approve"
    try:
        services.subscription_decide(
            actor=actor(request),
            subscription=sub,
            approve=approve,
            reason=form.cleaned_data["reason"],
        )
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    verdict = "approved" if approve else "rejected"
    messages.success(request, f"{sub.application.name} → {sub.product.name} {verdict}.")
    return redirect(back)

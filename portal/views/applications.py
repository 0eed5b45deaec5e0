"""Applications and their API keys (create, rotate, revoke)."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal import access, forms, services
from portal.models import ApiKey, Subscription
from portal.views.common import (
    actor,
    fail,
    paginate,
    portal_view,
    secret_page,
    tenant_page,
    use_tenant,
)

# --- applications and keys -----------------------------------------------------------


@portal_view
def applications(request, slug):
    tenant = tenant_page(request, slug, "application.view")
    apps = tenant.applications.annotate(
        active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
        active_subscriptions=Count(
            "subscriptions",
            filter=Q(subscriptions__status=Subscription.Status.ACTIVE),
            distinct=True,
        ),
    ).order_by("name")
    context = {
        "tenant": tenant,
        "page": paginate(request, apps),
        "can_manage": access.can(request.user, tenant, "application.manage"),
    }
    return render(request, "portal/applications.html", context)


@portal_view
def application_create(request, slug):
    tenant = tenant_page(request, slug, "application.manage")
    form = forms.ApplicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            app = services.application_create(
                actor=actor(request), tenant=tenant, **form.cleaned_data
            )
        except services.ServiceError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Application “{app.name}” created. Create a key next.")
            return redirect("portal:application_detail", app_id=app.pk)
    return render(request, "portal/application_form.html", {"tenant": tenant, "form": form})


def _key_status(key: ApiKey, now) -> tuple[str, str]:
    if key.revoked_at is not None:
        return "revoked", "Revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired", "Expired"
    if key.rotated_to_id is not None:
        return "rotated", "Rotated"
    return "active", "Active"


def _decorate_keys(keys):
    now = timezone.now()
    for key in keys:
        key.status, key.status_label = _key_status(key, now)
    return keys


def _application_context(request, app, *, key_form=None, issued=None) -> dict:
    keys = paginate(request, app.api_keys.order_by("-created_at", "-id"), "keys_page")
    keys.object_list = _decorate_keys(list(keys.object_list))
    subs = app.subscriptions.select_related("product").order_by("-created_at", "-id")
    return {
        "app": app,
        "tenant": app.tenant,
        "keys": keys,
        "subscriptions": paginate(request, subs, "subs_page"),
        "key_form": key_form or forms.ApiKeyForm(),
        "grace_choices": forms.GRACE_CHOICES,
        "issued": issued,
        "can_manage_keys": access.can(request.user, app.tenant, "key.manage"),
        "can_subscribe": access.can(request.user, app.tenant, "subscription.request"),
    }


def _application_page(request, app, **extra):
    context = _application_context(request, app, **extra)
    if request.htmx:
        return render(request, "portal/_keys.html", context)
    return render(request, "portal/application_detail.html", context)


@portal_view
def application_detail(request, app_id):
    app = access.access_application_by_id(request.user, app_id)
    access.require(request.user, app.tenant, "application.view")
    use_tenant(request, app.tenant)
    return _application_page(request, app)


@portal_view
def key_create(request, app_id):
    app = access.access_application_by_id(request.user, app_id)
    if request.method != "POST":
        return redirect("portal:application_detail", app_id=app.pk)
    form = forms.ApiKeyForm(request.POST)
    issued = None
    if form.is_valid():
        try:
            issued = services.api_key_create(
                actor=actor(request),
                tenant=app.tenant,
                application=app,
                name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            form = forms.ApiKeyForm()
    return secret_page(_application_page(request, app, key_form=form, issued=issued))


@portal_view
@require_POST
def key_rotate(request, key_id):
    key = access.access_api_key_by_id(request.user, key_id)
    back = _key_back(key)
    form = forms.RotateKeyForm(request.POST)
    if not form.is_valid():
        return fail(request, "Choose a grace period.", back)
    try:
        issued = services.api_key_rotate(actor=actor(request), api_key=key, grace=form.grace_period)
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    if key.application is None:
        return secret_page(render(request, "portal/key_rotated.html", {"issued": issued}))
    return secret_page(_application_page(request, key.application, issued=issued))


@portal_view
@require_POST
def key_revoke(request, key_id):
    key = access.access_api_key_by_id(request.user, key_id)
    try:
        services.api_key_revoke(actor=actor(request), api_key=key)
    except services.ServiceError as exc:
        return fail(request, str(exc), _key_back(key))
    key.refresh_from_db()
    if request.htmx:
        context = {
            "key": _decorate_keys([key])[0],
            "can_manage_keys": True,
            "grace_choices": forms.GRACE_CHOICES,
        }
        return render(request, "portal/_key_row.html", context)
    messages.success(request, f"Key {key.prefix}… revoked: it no longer works.")
    return redirect(_key_back(key))


def _key_back(key: ApiKey) -> str:
    if key.application_id is None:
        return reverse("portal:dashboard")
    return reverse("portal:application_detail", kwargs={"app_id": key.application_id})

"""Plumbing shared by the portal's pages: login and 403 handling, the actor, pagination,
htmx alerts, the current tenant.
"""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django_htmx.http import reswap, retarget

from portal import access, selectors, services

PAGE_SIZE = 20


# --- plumbing ------------------------------------------------------------------------


def portal_view(view):
    """Logged-in pages; `access.Denied` becomes the 403 page (an alert for htmx)."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except access.Denied as exc:
            if request.htmx:
                return _htmx_alert(request, str(exc), status=403)
            return render(request, "portal/403.html", {"reason": str(exc)}, status=403)

    return login_required(wrapped)


def actor(request) -> services.Actor:
    return services.Actor(request.user, request.META.get("REMOTE_ADDR"))


def paginate(request, items, param: str = "page"):
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get(param))


def _htmx_alert(request, message: str, *, status: int):
    response = render(request, "portal/_alert.html", {"message": message}, status=status)
    return reswap(retarget(response, "#htmx-alerts"), "innerHTML")


def fail(request, message: str, back: str):
    """A ServiceError on an action: an alert (400) for htmx, a message and redirect otherwise."""
    if request.htmx:
        return _htmx_alert(request, message, status=400)
    messages.error(request, message)
    return redirect(back)


def secret_page(response):
    """A response that shows a secret once must never be cached."""
    add_never_cache_headers(response)
    return response


def current_tenant(request):
    tenants = list(selectors.tenants_for_user(user=request.user))
    return selectors.current_tenant(request=request, tenants=tenants)


def use_tenant(request, tenant) -> None:
    request.session[selectors.SESSION_TENANT] = tenant.slug


def tenant_page(request, slug: str, action: str):
    """The tenant of a /portal/t/<slug>/ page: 404 for strangers, 403 without the role."""
    tenant = access.access_tenant_by_slug(request.user, slug)
    access.require(request.user, tenant, action)
    use_tenant(request, tenant)
    return tenant

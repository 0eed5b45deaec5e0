"""The dashboard, tenants (create, switch), members and invitations, the audit log."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal import access, forms, selectors, services
from portal.models import Invitation, Role, Subscription
from portal.views.common import (
    actor,
    current_tenant,
    fail,
    paginate,
    portal_view,
    tenant_page,
    use_tenant,
)

# --- dashboard and tenants -----------------------------------------------------------


@portal_view
def dashboard(request):
    tenant = current_tenant(request)
    if tenant is None:
        return render(request, "portal/dashboard.html", {"form": forms.TenantForm()})
    subs = Subscription.objects.filter(application__tenant=tenant)
    context = {
        "tenant": tenant,
        "role": access.role_in(request.user, tenant),
        "apps_count": tenant.applications.count(),
        "active_subscriptions": subs.filter(status=Subscription.Status.ACTIVE).count(),
        "pending_requests": subs.filter(status=Subscription.Status.PENDING).count(),
        "recent_apps": tenant.applications.order_by("-created_at")[:5],
        "can_manage_apps": access.can(request.user, tenant, "application.manage"),
    }
    return render(request, "portal/dashboard.html", context)


@portal_view
def tenant_create(request):
    form = forms.TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = services.tenant_create(actor=actor(request), name=form.cleaned_data["name"])
        except services.ServiceError as exc:
            form.add_error("name", str(exc))
        else:
            use_tenant(request, tenant)
            messages.success(request, f"Tenant “{tenant.name}” created. You are its owner.")
            return redirect("portal:dashboard")
    return render(request, "portal/tenant_form.html", {"form": form})


TENANT_PAGES = {
    "applications",
    "application_create",
    "members",
    "audit",
    "usage",
    "budgets",
    "reports",
}
SHARED_PAGES = {"catalog", "product_detail", "approvals", "tokens", "dashboard"}


@portal_view
@require_POST
def tenant_switch(request):
    form = forms.TenantSwitchForm(request.POST)
    if not form.is_valid():
        raise Http404("No such tenant.")
    tenant = access.access_tenant_by_slug(request.user, form.cleaned_data["tenant"])
    use_tenant(request, tenant)
    return redirect(_after_switch(request, tenant))


def _after_switch(request, tenant) -> str:
    """The same page for the new tenant where there is one; the dashboard otherwise."""
    wanted = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if wanted and safe:
        try:
            match = resolve(urlsplit(wanted).path)
        except Resolver404:
            match = None
        if match is not None and match.namespace == "portal":
            if match.url_name in TENANT_PAGES:
                return reverse(f"portal:{match.url_name}", kwargs={"slug": tenant.slug})
            if match.url_name in SHARED_PAGES:
                return wanted
    return reverse("portal:dashboard")


# --- members and invitations ---------------------------------------------------------


def _members_page(request, tenant, *, invite_form=None):
    can_manage = access.can(request.user, tenant, "tenant.manage_members")
    can_transfer = access.can(request.user, tenant, "tenant.transfer_ownership")
    members = paginate(request, tenant.memberships.select_related("user").order_by("id"))
    for membership in members:
        membership.editable = can_manage and (can_transfer or membership.role != Role.OWNER)
    roles = [c for c in Role.choices if can_transfer or c[0] != Role.OWNER]
    invitations = None
    if can_manage:
        pending = tenant.invitations.filter(accepted_at__isnull=True).order_by("-created_at")
        invitations = paginate(request, pending, "inv_page")
    context = {
        "tenant": tenant,
        "members": members,
        "can_manage": can_manage,
        "roles": roles,
        "invitations": invitations,
        "invite_form": invite_form or forms.InvitationForm(roles=roles),
    }
    return render(request, "portal/members.html", context)


@portal_view
def members(request, slug):
    tenant = tenant_page(request, slug, "tenant.view")
    return _members_page(request, tenant)


def _membership(tenant, member_id):
    membership = tenant.memberships.select_related("user", "tenant").filter(pk=member_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


@portal_view
@require_POST
def member_role(request, slug, member_id):
    tenant = tenant_page(request, slug, "tenant.view")
    membership = _membership(tenant, member_id)
    back = reverse("portal:members", kwargs={"slug": tenant.slug})
    form = forms.MemberRoleForm(request.POST)
    if not form.is_valid():
        return fail(request, "Choose a role.", back)
    try:
        services.membership_set_role(
            actor=actor(request), membership=membership, role=form.cleaned_data["role"]
        )
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    messages.success(request, f"{membership.user} is now {membership.get_role_display()}.")
    return redirect(back)


@portal_view
@require_POST
def member_remove(request, slug, member_id):
    tenant = tenant_page(request, slug, "tenant.view")
    membership = _membership(tenant, member_id)
    back = reverse("portal:members", kwargs={"slug": tenant.slug})
    try:
        services.membership_remove(actor=actor(request), membership=membership)
    except services.ServiceError as exc:
        return fail(request, str(exc), back)
    if membership.user_id == request.user.pk:
        request.session.pop(selectors.SESSION_TENANT, None)
        messages.success(request, f"You left {tenant.name}.")
        return redirect("portal:dashboard")
    messages.success(request, f"{membership.user} was removed from {tenant.name}.")
    return redirect(back)


@portal_view
@require_POST
def member_invite(request, slug):
    tenant = tenant_page(request, slug, "tenant.manage_members")
    allow_owner = access.can(request.user, tenant, "tenant.transfer_ownership")
    roles = [c for c in Role.choices if allow_owner or c[0] != Role.OWNER]
    form = forms.InvitationForm(request.POST, roles=roles)
    if form.is_valid():
        try:
            invitation = services.invitation_create(
                actor=actor(request), tenant=tenant, **form.cleaned_data
            )
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("portal:members", slug=tenant.slug)
    return _members_page(request, tenant, invite_form=form)


@portal_view
def invitation_accept(request, token):
    # The token is the capability: whoever holds the link may join, as the service allows.
    invitation = (
        Invitation.objects.select_related("tenant", "invited_by")
        .filter(token=token, accepted_at__isnull=True)
        .first()
    )
    if invitation is None:
        return render(request, "portal/invitation.html", {"invitation": None}, status=404)
    if request.method == "POST":
        try:
            membership = services.invitation_accept(actor=actor(request), token=token)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
            return redirect("portal:dashboard")
        use_tenant(request, membership.tenant)
        messages.success(request, f"Welcome to {membership.tenant.name}.")
        return redirect("portal:dashboard")
    return render(request, "portal/invitation.html", {"invitation": invitation})


# --- audit log -----------------------------------------------------------------------


@portal_view
def audit(request, slug):
    tenant = tenant_page(request, slug, "audit.view")
    events = tenant.audit_events.select_related("actor").order_by("-created_at", "-id")
    return render(
        request, "portal/audit.html", {"tenant": tenant, "page": paginate(request, events)}
    )

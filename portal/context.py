"""What every portal page knows: the user's tenants and the one they are working in."""

from __future__ import annotations

from portal import selectors


def portal_context(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    tenants = list(selectors.tenants_for_user(user=user))
    current = selectors.current_tenant(request=request, tenants=tenants)
    return {
        "portal_tenants": tenants,
        "current_tenant": current,
        "pending_approvals": selectors.pending_approvals_count(user=user),
    }

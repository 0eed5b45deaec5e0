"""Personal access tokens for the API."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal import forms, services
from portal.views.common import actor, paginate, portal_view, secret_page

# --- personal access tokens ----------------------------------------------------------


@portal_view
def tokens(request):
    form = forms.TokenForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        issued = services.personal_token_create(
            actor=actor(request), name=form.cleaned_data["name"]
        )
        form = forms.TokenForm()
    page = paginate(request, request.user.tokens.order_by("-created_at", "-id"))
    response = render(request, "portal/tokens.html", {"form": form, "page": page, "issued": issued})
    return secret_page(response) if issued else response


@portal_view
@require_POST
def token_revoke(request, token_id):
    token = request.user.tokens.filter(pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    services.personal_token_revoke(actor=actor(request), token=token)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("portal:tokens")

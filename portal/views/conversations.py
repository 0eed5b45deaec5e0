"""The tenant's server-side conversations: the list, and the inspector that shows each turn
next to exactly what the gateway sent upstream for it (portal.selectors_conversations)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from portal import selectors_conversations as conversations
from portal.views.common import portal_view, tenant_page


@portal_view
def conversations_page(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    found = conversations.conversations_of(tenant=tenant)
    page = Paginator(found, conversations.PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "portal/conversations.html", {"tenant": tenant, "page": page})


@portal_view
def conversation_page(request, slug, public_id):
    tenant = tenant_page(request, slug, "usage.view")
    conversation = conversations.access_conversation(tenant=tenant, public_id=public_id)
    context = {"tenant": tenant, "inspection": conversations.inspect(conversation=conversation)}
    return render(request, "portal/conversation.html", context)

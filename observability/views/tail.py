"""The live tail page: the tenant's calls as they are stored, over a websocket
(observability/consumers.py); static/tail.js draws them."""

from __future__ import annotations

from django.shortcuts import render

from observability import tail
from portal.models import ApiKey, Application
from portal.views.common import portal_view, tenant_page


@portal_view
def tail_page(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    applications = list(Application.objects.filter(tenant=tenant).order_by("name"))
    keys = list(ApiKey.objects.filter(tenant=tenant).order_by("name", "id"))
    context = {
        "tenant": tenant,
        "applications": applications,
        "keys": keys,
        # id -> name, for the table's application/key column (names are not in the events)
        "names": {
            "applications": {str(a.pk): a.name for a in applications},
            "keys": {str(k.pk): f"{k.name} ({k.prefix}…)" for k in keys},
        },
        "max_rows": tail.MAX_CALLS,
    }
    return render(request, "observability/tail.html", context)

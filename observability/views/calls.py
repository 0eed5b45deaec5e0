"""The call log explorer: a tenant's calls (filters, table, export, what is kept), one call
(its timeline and bodies), the operator's view of every tenant's, and the REST API.

Every event is reached through observability.explorer's doors (calls_visible_to,
access_call_by_request_id); the filters are explorer.CallFilterForm's everywhere.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from observability import explorer, timeline
from observability import serializers as s
from portal import access
from portal.api.views.base import BaseApi, ListApi, read
from portal.models import Tenant
from portal.services import ServiceError
from portal.views.common import actor, fail, paginate, portal_view, tenant_page

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


# --- a tenant's calls --------------------------------------------------------------------


@portal_view
def call_list(request, slug):
    tenant = tenant_page(request, slug, explorer.VIEW)
    context = {"tenant": tenant, **_settings_context(request, tenant)}
    return _list_page(request, tenant=tenant, context=context)


@portal_view
def call_export(request, slug, fmt):
    tenant = tenant_page(request, slug, explorer.VIEW)
    return _export(request, fmt, tenant=tenant, name=tenant.slug)


@portal_view
def call_detail(request, slug, request_id):
    tenant = tenant_page(request, slug, explorer.VIEW)
    event = explorer.access_call_by_request_id(request.user, request_id, tenant=tenant)
    back = reverse("observability:calls", args=[tenant.slug])
    return _detail_page(request, event, tenant=tenant, back=back)


@require_POST
@portal_view
def call_log_settings(request, slug):
    tenant = tenant_page(request, slug, explorer.MANAGE)
    form = explorer.CallLogSettingsForm(request.POST)
    back = reverse("observability:calls", args=[tenant.slug])
    if not form.is_valid():
        context = {"tenant": tenant, "settings_form": form, "can_manage": True}
        if request.htmx:
            return render(request, "observability/_calls_settings.html", context, status=400)
        return _list_page(request, tenant=tenant, context=context, status=400)
    try:
        explorer.call_log_settings_update(actor=actor(request), tenant=tenant, **form.cleaned_data)
    except ServiceError as exc:
        return fail(request, str(exc), back)
    messages.success(request, "Call log settings saved.")
    if request.htmx:
        context = {"tenant": tenant, **_settings_context(request, tenant), "saved": True}
        return render(request, "observability/_calls_settings.html", context)
    return redirect(back)


def _settings_context(request, tenant: Tenant) -> dict:
    can_manage = access.can(request.user, tenant, explorer.MANAGE)
    initial = {"log_bodies": tenant.log_bodies, "log_retention_days": tenant.log_retention_days}
    form = explorer.CallLogSettingsForm(initial=initial) if can_manage else None
    return {"can_manage": can_manage, "settings_form": form}


# --- every tenant's calls, for the operator ------------------------------------------------


def _require_operator(request) -> None:
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator sees every tenant's calls.")


@portal_view
def operator_call_list(request):
    _require_operator(request)
    return _list_page(request, tenant=None, context={"operator": True})


@portal_view
def operator_call_detail(request, request_id):
    _require_operator(request)
    event = explorer.access_call_by_request_id(request.user, request_id)
    tenant = Tenant.objects.filter(pk=event.tenant_id).first()
    back = reverse("observability:operator_calls")
    return _detail_page(request, event, tenant=tenant, back=back, operator=True)


# --- the shared pages -----------------------------------------------------------------------


def _filtered(request, params, *, tenant: Tenant | None):
    """(the form, the visible calls it selects); none when the form is invalid."""
    form = explorer.CallFilterForm(params, tenant=tenant)
    if not form.is_valid():
        return form, explorer.calls_visible_to(user=request.user, tenant=tenant).none()
    filters = form.filters()
    if tenant is None and filters.tenant:
        tenant = access.access_tenant_by_slug(request.user, filters.tenant)
    events = explorer.calls_visible_to(user=request.user, tenant=tenant)
    return form, explorer.filter_calls(events, filters)


def _list_page(request, *, tenant, context: dict, status: int = 200):
    form, events = _filtered(request, request.GET, tenant=tenant)
    page = paginate(request, events)
    page.object_list = explorer.labelled(page.object_list)
    tenants = {}
    if tenant is None:
        ids = {e.tenant_id for e in page.object_list}
        tenants = dict(Tenant.objects.filter(pk__in=ids).values_list("pk", "slug"))
        for event in page.object_list:
            event.tenant_slug = tenants.get(event.tenant_id, "")
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "primary": explorer.PRIMARY_FILTERS,
        "more_set": any(
            request.GET.get(name) for name in form.fields if name not in explorer.PRIMARY_FILTERS
        ),
        "page": page,
        "query": query.urlencode(),
        "exports": [
            (fmt.upper(), reverse("observability:calls_export", args=[tenant.slug, fmt]))
            for fmt in (EXPORT_TYPES if tenant is not None else ())
        ],
        **context,
    }
    results_only = request.htmx and request.htmx.target == "calls-results"
    template = "observability/_calls_results.html" if results_only else "observability/calls.html"
    return render(request, template, context, status=status)


def _export(request, fmt: str, *, tenant: Tenant | None, name: str):
    if fmt not in EXPORT_TYPES:
        raise Http404("Export as csv or jsonl.")
    form, events = _filtered(request, request.GET, tenant=tenant)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain")
    response = StreamingHttpResponse(
        explorer.export_rows(events, fmt), content_type=EXPORT_TYPES[fmt]
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="calls-{name}-{stamp}.{fmt}"'
    return response


def _detail_page(request, event, *, tenant, back: str, operator: bool = False):
    kept = explorer.bodies_of(event, tenant)
    names = explorer.labelled([event])[0]
    context = {
        "event": names,
        "tenant": tenant,
        "operator": operator,
        "back": back,
        "spans": timeline.timeline(event),
        "bodies": kept,
        "request_json": _pretty(kept.request),
        "response_json": _pretty(kept.response),
        "retention_days": explorer.retention_days(tenant),
        "metadata": _metadata(event),
    }
    return render(request, "observability/call.html", context)


def _pretty(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _metadata(event) -> list[tuple[str, str]]:
    rows = [
        ("End user", event.end_user),
        ("Session", event.session_id),
        ("Trace", event.trace_id),
        ("Tags", ", ".join(str(t) for t in event.tags) if isinstance(event.tags, list) else ""),
        ("Routing", event.routing),
        ("Prompt", _pretty(event.prompt) if event.prompt else ""),
    ]
    return [(label, value) for label, value in rows if value]


# --- the REST API ----------------------------------------------------------------------------


class CallListApi(ListApi):
    @extend_schema(
        operation_id="calls_list",
        summary="Calls of the tenants where I may view usage, newest first",
        description=(
            "The call log, filtered like the portal's explorer. `tenant` narrows it to one "
            "tenant; times are ISO 8601 (UTC when no offset is given). Bodies are in "
            "GET /api/v1/calls/{request_id}/."
        ),
        parameters=s.filter_parameters(),
        responses={200: s.CallOutputSerializer(many=True), **read(400, 403)},
        tags=["calls"],
    )
    def get(self, request):
        form, events = _filtered(request, request.query_params, tenant=None)
        if not form.is_valid():
            raise ValidationError({k: list(v) for k, v in form.errors.items()})
        return self.paginated(events, s.CallOutputSerializer)


class CallDetailApi(BaseApi):
    @extend_schema(
        operation_id="calls_retrieve",
        summary="One call, with its request and response bodies when they were kept",
        responses={200: s.CallDetailOutputSerializer, **read()},
        tags=["calls"],
    )
    def get(self, request, request_id):
        event = explorer.access_call_by_request_id(request.user, request_id)
        tenant = Tenant.objects.filter(pk=event.tenant_id).first()
        context = {"bodies": explorer.bodies_of(event, tenant)}
        return Response(s.CallDetailOutputSerializer(event, context=context).data)


api_call_list = CallListApi.as_view()
api_call_detail = CallDetailApi.as_view()

"""A tenant's usage: totals and per-day series, and the same by model, application and key."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from billing import selectors as billing
from portal import access
from portal.api import serializers_billing as sb
from portal.api.views.base import BaseApi, read, valid


class UsageApi(BaseApi):
    @extend_schema(
        operation_id="usage_retrieve",
        summary="Cost, tokens and requests of a tenant over the last 7, 30 or 90 days",
        description=(
            "Days are UTC calendar days ending today, today included; `per_day` has one entry "
            "per day, days without traffic included. Costs are decimal strings in US dollars."
        ),
        parameters=[sb.UsageFilterSerializer],
        responses={200: sb.UsageOutputSerializer, **read(400, 403)},
        tags=["usage"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "usage.view")
        days = valid(sb.UsageFilterSerializer, request.query_params)["days"]
        report = billing.usage_report(tenant=tenant, days=days)
        data = {
            "tenant": tenant.slug,
            "days": report.days,
            "first": report.first,
            "last": report.last,
            "totals": report.totals,
            "per_day": report.per_day,
            "by_model": report.by_model,
            "by_application": report.by_application,
            "by_key": report.by_key,
        }
        return Response(sb.UsageOutputSerializer(data).data)

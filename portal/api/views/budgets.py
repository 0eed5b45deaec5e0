"""Budgets and rate limits of a tenant.

Every member reads them (`usage.view`); owners and admins set and remove them
(`budget.manage`) through billing.controls, which checks the role again and audits. The
tenant comes through its door first (404 for strangers); a budget, limit, application or key
of another tenant is a 404 too, in the path or in the body.
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from billing import controls
from billing import selectors as billing
from billing.models import Budget, RateLimit
from portal import access
from portal.api import serializers_billing as sb
from portal.api.views.base import BaseApi, ListApi, actor, read, write
from portal.models import ApiKey


def _tenant(request, slug: str, action: str):
    tenant = access.access_tenant_by_slug(request.user, slug)
    access.require(request.user, tenant, action)
    return tenant


def _target(tenant, data: dict):
    """The application and key the input names, reached within the tenant only."""
    application = api_key = None
    if data.get("application") is not None:
        application = tenant.applications.filter(pk=data["application"]).first()
        if application is None:
            raise Http404("No such application.")
    if data.get("api_key") is not None:
        api_key = ApiKey.objects.filter(tenant=tenant, pk=data["api_key"]).first()
        if api_key is None:
            raise Http404("No such key.")
    return application, api_key


def _input(serializer_class, request, **context) -> dict:
    serializer = serializer_class(data=request.data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- budgets ------------------------------------------------------------------------


class BudgetListSetApi(ListApi):
    @extend_schema(
        operation_id="budgets_list",
        summary="A tenant's budgets, with what each has spent in its current period",
        responses={200: sb.BudgetOutputSerializer(many=True), **read(403)},
        tags=["budgets"],
    )
    def get(self, request, slug):
        tenant = _tenant(request, slug, "usage.view")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(billing.budgets_of(tenant=tenant), request, view=self)
        context = {"now": timezone.now()}
        data = sb.BudgetOutputSerializer(page, many=True, context=context).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="budgets_set",
        summary="Set the budget of a target (tenant, application or key) for a period",
        description=(
            "Creates the budget (201) or changes the one the target has for that period (200). "
            "Fields left out keep their current values."
        ),
        request=sb.BudgetInputSerializer,
        responses={
            200: sb.BudgetOutputSerializer,
            201: sb.BudgetOutputSerializer,
            **write(),
        },
        tags=["budgets"],
    )
    def post(self, request, slug):
        tenant = _tenant(request, slug, "budget.manage")
        data = _input(sb.BudgetInputSerializer, request)
        application, api_key = _target(tenant, data)
        existing = Budget.objects.filter(
            tenant=tenant, application=application, api_key=api_key, period=data["period"]
        ).first()
        kept = {
            "thresholds": existing.thresholds if existing else controls.DEFAULT_THRESHOLDS,
            "hard": existing.hard if existing else True,
            "notify_emails": existing.notify_emails if existing else [],
            "webhook_url": existing.webhook_url if existing else "",
        }
        budget = controls.budget_set(
            actor=actor(request),
            tenant=tenant,
            application=application,
            api_key=api_key,
            period=data["period"],
            amount_usd=data["amount_usd"],
            **{name: data.get(name, value) for name, value in kept.items()},
        )
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return Response(sb.BudgetOutputSerializer(budget).data, status=code)


def _budget(request, slug: str, budget_id: int) -> Budget:
    tenant = _tenant(request, slug, "usage.view")
    budget = billing.budget_in(tenant=tenant, budget_id=budget_id)
    if budget is None:
        raise Http404("No such budget.")
    return budget


class BudgetDetailApi(BaseApi):
    @extend_schema(
        operation_id="budgets_retrieve",
        responses={200: sb.BudgetOutputSerializer, **read(403)},
        tags=["budgets"],
    )
    def get(self, request, slug, id):
        return Response(sb.BudgetOutputSerializer(_budget(request, slug, id)).data)

    @extend_schema(
        operation_id="budgets_delete",
        request=None,
        responses={204: None, **write()},
        tags=["budgets"],
    )
    def delete(self, request, slug, id):
        controls.budget_delete(actor=actor(request), budget=_budget(request, slug, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- rate limits ----------------------------------------------------------------------


class RateLimitListSetApi(ListApi):
    @extend_schema(
        operation_id="rate_limits_list",
        summary="A tenant's rate limits",
        responses={200: sb.RateLimitOutputSerializer(many=True), **read(403)},
        tags=["rate limits"],
    )
    def get(self, request, slug):
        tenant = _tenant(request, slug, "usage.view")
        return self.paginated(billing.rate_limits_of(tenant=tenant), sb.RateLimitOutputSerializer)

    @extend_schema(
        operation_id="rate_limits_set",
        summary="Set the rate limits of a target (tenant, application or key), for a model or all",
        description=(
            "Creates the limits (201) or changes those the target has for that model (200). "
            "Limits left out keep their current values; null lifts one. To lift them all, "
            "delete the rate limit."
        ),
        request=sb.RateLimitInputSerializer,
        responses={
            200: sb.RateLimitOutputSerializer,
            201: sb.RateLimitOutputSerializer,
            **write(),
        },
        tags=["rate limits"],
    )
    def post(self, request, slug):
        tenant = _tenant(request, slug, "budget.manage")
        data = _input(sb.RateLimitInputSerializer, request, tenant=tenant)
        application, api_key = _target(tenant, data)
        existing = RateLimit.objects.filter(
            tenant=tenant, application=application, api_key=api_key, model=data["model"]
        ).first()
        limits = {
            name: data[name] if name in data else getattr(existing, name, None)
            for name in sb.RateLimitInputSerializer.LIMITS
        }
        if all(value is None for value in limits.values()):
            raise exceptions.ValidationError(
                {
                    "detail": "Set at least one of requests_per_minute, tokens_per_minute and "
                    "concurrent; to lift every limit, delete the rate limit."
                }
            )
        limit = controls.rate_limit_set(
            actor=actor(request),
            tenant=tenant,
            application=application,
            api_key=api_key,
            model=data["model"],
            **limits,
        )
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return Response(sb.RateLimitOutputSerializer(limit).data, status=code)


def _rate_limit(request, slug: str, limit_id: int) -> RateLimit:
    tenant = _tenant(request, slug, "usage.view")
    limit = billing.rate_limit_in(tenant=tenant, limit_id=limit_id)
    if limit is None:
        raise Http404("No such rate limit.")
    return limit


class RateLimitDetailApi(BaseApi):
    @extend_schema(
        operation_id="rate_limits_retrieve",
        responses={200: sb.RateLimitOutputSerializer, **read(403)},
        tags=["rate limits"],
    )
    def get(self, request, slug, id):
        return Response(sb.RateLimitOutputSerializer(_rate_limit(request, slug, id)).data)

    @extend_schema(
        operation_id="rate_limits_delete",
        request=None,
        responses={204: None, **write()},
        tags=["rate limits"],
    )
    def delete(self, request, slug, id):
        controls.rate_limit_delete(actor=actor(request), limit=_rate_limit(request, slug, id))
        return Response(status=status.HTTP_204_NO_CONTENT)

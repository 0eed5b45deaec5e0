"""The audit log and personal access tokens."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from portal import access, services
from portal.api import serializers as s
from portal.api.views.base import BaseApi, ListApi, actor, errors, read, valid
from portal.models import AuditEvent, Membership

# A read this API needs that portal.selectors does not offer (yet).


def _audit_events_for(*, user, tenant=None):
    events = AuditEvent.objects.select_related("tenant").order_by("-created_at", "-pk")
    if tenant is not None:
        access.require(user, tenant, "audit.view")
        return events.filter(tenant=tenant)
    if user.is_staff:
        return events
    auditable = Membership.objects.filter(user=user, role__in=access.MATRIX["audit.view"])
    return events.filter(tenant__in=auditable.values("tenant"))


# --- audit --------------------------------------------------------------------------


class AuditEventListApi(ListApi):
    @extend_schema(
        operation_id="audit_list",
        summary="Audit events of the tenants where I may view the audit log",
        parameters=[s.AuditFilterSerializer],
        responses={200: s.AuditEventOutputSerializer(many=True), **read(400, 403)},
        tags=["audit"],
    )
    def get(self, request):
        filters = valid(s.AuditFilterSerializer, request.query_params)
        tenant = None
        if filters.get("tenant"):
            tenant = access.access_tenant_by_slug(request.user, filters["tenant"])
        events = _audit_events_for(user=request.user, tenant=tenant)
        return self.paginated(events, s.AuditEventOutputSerializer)


# --- personal access tokens ----------------------------------------------------------


class TokenListCreateApi(ListApi):
    @extend_schema(
        operation_id="tokens_list",
        summary="My personal access tokens (never their secrets)",
        responses={200: s.TokenOutputSerializer(many=True), **errors(401)},
        tags=["tokens"],
    )
    def get(self, request):
        tokens = request.user.tokens.order_by("-created_at", "-pk")
        return self.paginated(tokens, s.TokenOutputSerializer)

    @extend_schema(
        operation_id="tokens_create",
        summary="Create a token for scripts; the response carries its secret, once",
        request=s.TokenCreateInputSerializer,
        responses={201: s.IssuedTokenOutputSerializer, **errors(400, 401, 415)},
        tags=["tokens"],
    )
    def post(self, request):
        data = valid(s.TokenCreateInputSerializer, request.data)
        issued = services.personal_token_create(actor=actor(request), **data)
        return Response(s.IssuedTokenOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class TokenRevokeApi(BaseApi):
    @extend_schema(
        operation_id="tokens_revoke",
        request=None,
        responses={200: s.TokenOutputSerializer, **read()},
        tags=["tokens"],
    )
    def post(self, request, id):
        token = request.user.tokens.filter(pk=id).first()
        if token is None:
            raise Http404("No such token.")
        services.personal_token_revoke(actor=actor(request), token=token)
        token.refresh_from_db()
        return Response(s.TokenOutputSerializer(token).data)

"""Tenants, their members and invitations."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from portal import access, selectors, services
from portal.api import serializers as s
from portal.api.views.base import BaseApi, ListApi, actor, errors, read, valid, write
from portal.models import Membership


def _member_in(tenant, member_id: int) -> Membership:
    members = Membership.objects.select_related("user", "tenant")
    membership = members.filter(tenant=tenant, pk=member_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


class TenantListCreateApi(ListApi):
    @extend_schema(
        operation_id="tenants_list",
        summary="Tenants I belong to (the operator: all)",
        responses={200: s.TenantOutputSerializer(many=True), **errors(401)},
        tags=["tenants"],
    )
    def get(self, request):
        tenants = selectors.tenants_for_user(user=request.user)
        return self.paginated(tenants, s.TenantOutputSerializer)

    @extend_schema(
        operation_id="tenants_create",
        summary="Create a tenant; the caller becomes its owner",
        request=s.TenantCreateInputSerializer,
        responses={201: s.TenantOutputSerializer, **errors(400, 401, 415)},
        tags=["tenants"],
    )
    def post(self, request):
        data = valid(s.TenantCreateInputSerializer, request.data)
        tenant = services.tenant_create(actor=actor(request), **data)
        return Response(s.TenantOutputSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailApi(BaseApi):
    @extend_schema(
        operation_id="tenants_retrieve",
        responses={200: s.TenantOutputSerializer, **read(403)},
        tags=["tenants"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "tenant.view")
        return Response(s.TenantOutputSerializer(tenant).data)


class MemberListApi(ListApi):
    @extend_schema(
        operation_id="members_list",
        responses={200: s.MemberOutputSerializer(many=True), **read(403)},
        tags=["members"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "tenant.view")
        members = tenant.memberships.select_related("user").order_by("created_at", "pk")
        return self.paginated(members, s.MemberOutputSerializer)


class MemberDetailApi(BaseApi):
    @extend_schema(
        operation_id="members_retrieve",
        responses={200: s.MemberOutputSerializer, **read(403)},
        tags=["members"],
    )
    def get(self, request, slug, id):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "tenant.view")
        return Response(s.MemberOutputSerializer(_member_in(tenant, id)).data)

    @extend_schema(
        operation_id="members_set_role",
        summary="Change a member's role",
        request=s.MemberRoleInputSerializer,
        responses={200: s.MemberOutputSerializer, **write()},
        tags=["members"],
    )
    def patch(self, request, slug, id):
        membership = _member_in(access.access_tenant_by_slug(request.user, slug), id)
        data = valid(s.MemberRoleInputSerializer, request.data)
        membership = services.membership_set_role(
            actor=actor(request), membership=membership, role=data["role"]
        )
        return Response(s.MemberOutputSerializer(membership).data)

    @extend_schema(
        operation_id="members_remove",
        request=None,
        responses={204: None, **write()},
        tags=["members"],
    )
    def delete(self, request, slug, id):
        membership = _member_in(access.access_tenant_by_slug(request.user, slug), id)
        services.membership_remove(actor=actor(request), membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListCreateApi(ListApi):
    @extend_schema(
        operation_id="invitations_list",
        responses={200: s.InvitationOutputSerializer(many=True), **read(403)},
        tags=["members"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "tenant.view")
        invitations = tenant.invitations.select_related("invited_by").order_by("-created_at", "-pk")
        return self.paginated(invitations, s.InvitationOutputSerializer)

    @extend_schema(
        operation_id="invitations_create",
        summary="Invite someone by email",
        request=s.InvitationCreateInputSerializer,
        responses={201: s.InvitationOutputSerializer, **write()},
        tags=["members"],
    )
    def post(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        data = valid(s.InvitationCreateInputSerializer, request.data)
        invitation = services.invitation_create(actor=actor(request), tenant=tenant, **data)
        return Response(
            s.InvitationOutputSerializer(invitation).data, status=status.HTTP_201_CREATED
        )

"""The management REST API: thin views over portal.access, portal.selectors and portal.services.

Every object is reached through an `access_*` door first (another tenant's object is a 404,
before any input is looked at); writes go through one service, which checks the permission
matrix (`access.Denied` is a 403) and writes the audit log.
"""

from __future__ import annotations

from datetime import timedelta

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from portal import access, selectors, services
from portal.api import serializers as s
from portal.api.auth import PersonalAccessTokenAuthentication
from portal.models import (
    ApiKey,
    AuditEvent,
    Membership,
    Subscription,
)

# --- plumbing -----------------------------------------------------------------------


def _actor(request) -> services.Actor:
    return services.Actor(request.user, request.META.get("REMOTE_ADDR"))


def _errors(*codes: int) -> dict:
    """Documented error answers: 400 carries field errors, the others a `detail`."""
    return {code: OpenApiTypes.OBJECT if code == 400 else s.ErrorOutputSerializer for code in codes}


def _read(*extra: int) -> dict:
    return _errors(401, 404, *extra)


def _write(*extra: int) -> dict:
    return _errors(400, 401, 403, 404, *extra)


class BaseApi(APIView):
    # Tokens first: scripts get 401 + `WWW-Authenticate: Bearer` rather than a bare 403.
    authentication_classes = [PersonalAccessTokenAuthentication, SessionAuthentication]


class ListApi(BaseApi):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def paginated(self, queryset, serializer_class) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _member_in(tenant, member_id: int) -> Membership:
    members = Membership.objects.select_related("user", "tenant")
    membership = members.filter(tenant=tenant, pk=member_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


# Reads this API needs that portal.selectors does not offer (yet).


def _audit_events_for(*, user, tenant=None):
    events = AuditEvent.objects.select_related("tenant").order_by("-created_at", "-pk")
    if tenant is not None:
        access.require(user, tenant, "audit.view")
        return events.filter(tenant=tenant)
    if user.is_staff:
        return events
    auditable = Membership.objects.filter(user=user, role__in=access.MATRIX["audit.view"])
    return events.filter(tenant__in=auditable.values("tenant"))


def _subscriptions(queryset):
    return queryset.select_related(
        "application__tenant", "product", "requested_by", "decided_by"
    ).order_by("-created_at", "-pk")


# --- tenants and members ------------------------------------------------------------


class TenantListCreateApi(ListApi):
    @extend_schema(
        operation_id="tenants_list",
        summary="Tenants I belong to (the operator: all)",
        responses={200: s.TenantOutputSerializer(many=True), **_errors(401)},
        tags=["tenants"],
    )
    def get(self, request):
        tenants = selectors.tenants_for_user(user=request.user)
        return self.paginated(tenants, s.TenantOutputSerializer)

    @extend_schema(
        operation_id="tenants_create",
        summary="Create a tenant; the caller becomes its owner",
        request=s.TenantCreateInputSerializer,
        responses={201: s.TenantOutputSerializer, **_errors(400, 401)},
        tags=["tenants"],
    )
    def post(self, request):
        data = _valid(s.TenantCreateInputSerializer, request.data)
        tenant = services.tenant_create(actor=_actor(request), **data)
        return Response(s.TenantOutputSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailApi(BaseApi):
    @extend_schema(
        operation_id="tenants_retrieve",
        responses={200: s.TenantOutputSerializer, **_read(403)},
        tags=["tenants"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "tenant.view")
        return Response(s.TenantOutputSerializer(tenant).data)


class MemberListApi(ListApi):
    @extend_schema(
        operation_id="members_list",
        responses={200: s.MemberOutputSerializer(many=True), **_read(403)},
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
        responses={200: s.MemberOutputSerializer, **_read(403)},
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
        responses={200: s.MemberOutputSerializer, **_write()},
        tags=["members"],
    )
    def patch(self, request, slug, id):
        membership = _member_in(access.access_tenant_by_slug(request.user, slug), id)
        data = _valid(s.MemberRoleInputSerializer, request.data)
        membership = services.membership_set_role(
            actor=_actor(request), membership=membership, role=data["role"]
        )
        return Response(s.MemberOutputSerializer(membership).data)

    @extend_schema(
        operation_id="members_remove",
        request=None,
        responses={204: None, **_write()},
        tags=["members"],
    )
    def delete(self, request, slug, id):
        membership = _member_in(access.access_tenant_by_slug(request.user, slug), id)
        services.membership_remove(actor=_actor(request), membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListCreateApi(ListApi):
    @extend_schema(
        operation_id="invitations_list",
        responses={200: s.InvitationOutputSerializer(many=True), **_read(403)},
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
        responses={201: s.InvitationOutputSerializer, **_write()},
        tags=["members"],
    )
    def post(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        data = _valid(s.InvitationCreateInputSerializer, request.data)
        invitation = services.invitation_create(actor=_actor(request), tenant=tenant, **data)
        return Response(
            s.InvitationOutputSerializer(invitation).data, status=status.HTTP_201_CREATED
        )


# --- applications and keys ----------------------------------------------------------


class ApplicationListCreateApi(ListApi):
    @extend_schema(
        operation_id="applications_list",
        responses={200: s.ApplicationOutputSerializer(many=True), **_read(403)},
        tags=["applications"],
    )
    def get(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "application.view")
        apps = tenant.applications.select_related("tenant").order_by("name", "pk")
        return self.paginated(apps, s.ApplicationOutputSerializer)

    @extend_schema(
        operation_id="applications_create",
        request=s.ApplicationCreateInputSerializer,
        responses={201: s.ApplicationOutputSerializer, **_write()},
        tags=["applications"],
    )
    def post(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        data = _valid(s.ApplicationCreateInputSerializer, request.data)
        app = services.application_create(actor=_actor(request), tenant=tenant, **data)
        return Response(s.ApplicationOutputSerializer(app).data, status=status.HTTP_201_CREATED)


class ApplicationDetailApi(BaseApi):
    @extend_schema(
        operation_id="applications_retrieve",
        responses={200: s.ApplicationOutputSerializer, **_read(403)},
        tags=["applications"],
    )
    def get(self, request, id):
        app = access.access_application_by_id(request.user, id)
        access.require(request.user, app.tenant, "application.view")
        return Response(s.ApplicationOutputSerializer(app).data)


class ApiKeyListCreateApi(ListApi):
    @extend_schema(
        operation_id="keys_list",
        summary="An application's keys (never their secrets)",
        responses={200: s.ApiKeyOutputSerializer(many=True), **_read(403)},
        tags=["keys"],
    )
    def get(self, request, id):
        app = access.access_application_by_id(request.user, id)
        access.require(request.user, app.tenant, "key.view")
        keys = ApiKey.objects.filter(application=app).order_by("-created_at", "-pk")
        return self.paginated(keys, s.ApiKeyOutputSerializer)

    @extend_schema(
        operation_id="keys_create",
        summary="Create a key; the response carries its secret, once",
        request=s.ApiKeyCreateInputSerializer,
        responses={201: s.IssuedApiKeyOutputSerializer, **_write()},
        tags=["keys"],
    )
    def post(self, request, id):
        app = access.access_application_by_id(request.user, id)
        data = _valid(s.ApiKeyCreateInputSerializer, request.data)
        issued = services.api_key_create(
            actor=_actor(request), tenant=app.tenant, application=app, **data
        )
        return Response(s.IssuedApiKeyOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class ApiKeyRotateApi(BaseApi):
    @extend_schema(
        operation_id="keys_rotate",
        summary="Replace a key; the old one works for the grace period",
        request=s.ApiKeyRotateInputSerializer,
        responses={201: s.IssuedApiKeyOutputSerializer, **_write()},
        tags=["keys"],
    )
    def post(self, request, id):
        api_key = access.access_api_key_by_id(request.user, id)
        data = _valid(s.ApiKeyRotateInputSerializer, request.data)
        issued = services.api_key_rotate(
            actor=_actor(request),
            api_key=api_key,
            grace=timedelta(seconds=data["grace_seconds"]),
        )
        return Response(s.IssuedApiKeyOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(BaseApi):
    @extend_schema(
        operation_id="keys_revoke",
        request=None,
        responses={200: s.ApiKeyOutputSerializer, **_write()},
        tags=["keys"],
    )
    def post(self, request, id):
        api_key = access.access_api_key_by_id(request.user, id)
        services.api_key_revoke(actor=_actor(request), api_key=api_key)
        api_key.refresh_from_db()
        return Response(s.ApiKeyOutputSerializer(api_key).data)


# --- products -----------------------------------------------------------------------


class ProductListCreateApi(ListApi):
    @extend_schema(
        operation_id="products_list",
        summary="The catalog visible to me",
        responses={200: s.ProductOutputSerializer(many=True), **_errors(401)},
        tags=["products"],
    )
    def get(self, request):
        products = (
            access.products_visible_to(request.user)
            .select_related("owner")
            .prefetch_related("language_models")
            .order_by("name", "pk")
        )
        return self.paginated(products, s.ProductOutputSerializer)

    @extend_schema(
        operation_id="products_create",
        summary="Create a product of a tenant (or, for the operator, a model product)",
        request=s.ProductCreateInputSerializer,
        responses={201: s.ProductOutputSerializer, **_write()},
        tags=["products"],
    )
    def post(self, request):
        data = dict(_valid(s.ProductCreateInputSerializer, request.data))
        owner_slug = data.pop("owner")
        owner = access.access_tenant_by_slug(request.user, owner_slug) if owner_slug else None
        product = services.product_create(actor=_actor(request), owner=owner, **data)
        return Response(s.ProductOutputSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(BaseApi):
    @extend_schema(
        operation_id="products_retrieve",
        responses={200: s.ProductOutputSerializer, **_read()},
        tags=["products"],
    )
    def get(self, request, slug):
        product = access.access_product_by_slug(request.user, slug)
        return Response(s.ProductOutputSerializer(product).data)

    @extend_schema(
        operation_id="products_update",
        request=s.ProductUpdateInputSerializer,
        responses={200: s.ProductOutputSerializer, **_write()},
        tags=["products"],
    )
    def patch(self, request, slug):
        product = access.access_product_by_slug(request.user, slug)
        data = _valid(s.ProductUpdateInputSerializer, request.data)
        product = services.product_update(actor=_actor(request), product=product, **data)
        return Response(s.ProductOutputSerializer(product).data)


# --- subscriptions ------------------------------------------------------------------


class ApplicationSubscriptionListCreateApi(ListApi):
    @extend_schema(
        operation_id="application_subscriptions_list",
        responses={200: s.SubscriptionOutputSerializer(many=True), **_read(403)},
        tags=["subscriptions"],
    )
    def get(self, request, id):
        app = access.access_application_by_id(request.user, id)
        access.require(request.user, app.tenant, "subscription.view")
        subs = _subscriptions(Subscription.objects.filter(application=app))
        return self.paginated(subs, s.SubscriptionOutputSerializer)

    @extend_schema(
        operation_id="application_subscriptions_create",
        summary="Subscribe the application to a product (pending if it needs approval)",
        request=s.SubscriptionRequestInputSerializer,
        responses={201: s.SubscriptionOutputSerializer, **_write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        app = access.access_application_by_id(request.user, id)
        data = _valid(s.SubscriptionRequestInputSerializer, request.data)
        product = access.access_product_by_slug(request.user, data["product"])
        sub = services.subscription_request(actor=_actor(request), application=app, product=product)
        return Response(s.SubscriptionOutputSerializer(sub).data, status=status.HTTP_201_CREATED)


class SubscriptionListApi(ListApi):
    @extend_schema(
        operation_id="subscriptions_list",
        summary="Subscriptions of my applications and to my products",
        parameters=[s.SubscriptionFilterSerializer],
        responses={200: s.SubscriptionOutputSerializer(many=True), **_errors(400, 401)},
        tags=["subscriptions"],
    )
    def get(self, request):
        filters = _valid(s.SubscriptionFilterSerializer, request.query_params)
        subs = access.subscriptions_visible_to(request.user)
        if "status" in filters:
            subs = subs.filter(status=filters["status"])
        return self.paginated(_subscriptions(subs), s.SubscriptionOutputSerializer)


class SubscriptionApproveApi(BaseApi):
    @extend_schema(
        operation_id="subscriptions_approve",
        request=s.ReasonInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **_write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        sub = access.access_subscription_by_id(request.user, id)
        data = _valid(s.ReasonInputSerializer, request.data)
        sub = services.subscription_decide(
            actor=_actor(request), subscription=sub, approve=True, reason=data["reason"]
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


class SubscriptionRejectApi(BaseApi):
    @extend_schema(
        operation_id="subscriptions_reject",
        request=s.RejectInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **_write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        sub = access.access_subscription_by_id(request.user, id)
        data = _valid(s.RejectInputSerializer, request.data)
        sub = services.subscription_decide(
            actor=_actor(request), subscription=sub, approve=False, reason=data["reason"]
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


class _SubscriptionStatusApi(BaseApi):
    target_status: str

    def set_status(self, request, id) -> Response:
        sub = access.access_subscription_by_id(request.user, id)
        data = _valid(s.ReasonInputSerializer, request.data)
        sub = services.subscription_set_status(
            actor=_actor(request), subscription=sub, status=self.target_status, **data
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


def _status_schema(name: str, summary: str):
    return extend_schema(
        operation_id=f"subscriptions_{name}",
        summary=summary,
        request=s.ReasonInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **_write()},
        tags=["subscriptions"],
    )


class SubscriptionSuspendApi(_SubscriptionStatusApi):
    target_status = Subscription.Status.SUSPENDED

    @_status_schema("suspend", "Suspend an active subscription (product side)")
    def post(self, request, id):
        return self.set_status(request, id)


class SubscriptionResumeApi(_SubscriptionStatusApi):
    target_status = Subscription.Status.ACTIVE

    @_status_schema("resume", "Resume a suspended subscription (product side)")
    def post(self, request, id):
        return self.set_status(request, id)


class SubscriptionRevokeApi(_SubscriptionStatusApi):
    target_status = Subscription.Status.REVOKED

    @_status_schema("revoke", "End a subscription (the product side or the subscriber)")
    def post(self, request, id):
        return self.set_status(request, id)


# --- audit --------------------------------------------------------------------------


class AuditEventListApi(ListApi):
    @extend_schema(
        operation_id="audit_list",
        summary="Audit events of the tenants where I may view the audit log",
        parameters=[s.AuditFilterSerializer],
        responses={200: s.AuditEventOutputSerializer(many=True), **_read(400, 403)},
        tags=["audit"],
    )
    def get(self, request):
        filters = _valid(s.AuditFilterSerializer, request.query_params)
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
        responses={200: s.TokenOutputSerializer(many=True), **_errors(401)},
        tags=["tokens"],
    )
    def get(self, request):
        tokens = request.user.tokens.order_by("-created_at", "-pk")
        return self.paginated(tokens, s.TokenOutputSerializer)

    @extend_schema(
        operation_id="tokens_create",
        summary="Create a token for scripts; the response carries its secret, once",
        request=s.TokenCreateInputSerializer,
        responses={201: s.IssuedTokenOutputSerializer, **_errors(400, 401)},
        tags=["tokens"],
    )
    def post(self, request):
        data = _valid(s.TokenCreateInputSerializer, request.data)
        issued = services.personal_token_create(actor=_actor(request), **data)
        return Response(s.IssuedTokenOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class TokenRevokeApi(BaseApi):
    @extend_schema(
        operation_id="tokens_revoke",
        request=None,
        responses={200: s.TokenOutputSerializer, **_read()},
        tags=["tokens"],
    )
    def post(self, request, id):
        token = request.user.tokens.filter(pk=id).first()
        if token is None:
            raise Http404("No such token.")
        services.personal_token_revoke(actor=_actor(request), token=token)
        token.refresh_from_db()
        return Response(s.TokenOutputSerializer(token).data)

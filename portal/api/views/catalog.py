"""The catalog: products, and the subscriptions of applications to them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from portal import access, services
from portal.api import serializers as s
from portal.api.views.base import BaseApi, ListApi, actor, errors, read, valid, write
from portal.models import Subscription

# A read this API needs that portal.selectors does not offer (yet).


def _subscriptions(queryset):
    return queryset.select_related(
        "application__tenant", "product", "requested_by", "decided_by"
    ).order_by("-created_at", "-pk")


# --- products -----------------------------------------------------------------------


class ProductListCreateApi(ListApi):
    @extend_schema(
        operation_id="products_list",
        summary="The catalog visible to me",
        responses={200: s.ProductOutputSerializer(many=True), **errors(401)},
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
        responses={201: s.ProductOutputSerializer, **write()},
        tags=["products"],
    )
    def post(self, request):
        data = dict(valid(s.ProductCreateInputSerializer, request.data))
        owner_slug = data.pop("owner")
        owner = access.access_tenant_by_slug(request.user, owner_slug) if owner_slug else None
        product = services.product_create(actor=actor(request), owner=owner, **data)
        return Response(s.ProductOutputSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(BaseApi):
    @extend_schema(
        operation_id="products_retrieve",
        responses={200: s.ProductOutputSerializer, **read()},
        tags=["products"],
    )
    def get(self, request, slug):
        product = access.access_product_by_slug(request.user, slug)
        return Response(s.ProductOutputSerializer(product).data)

    @extend_schema(
        operation_id="products_update",
        request=s.ProductUpdateInputSerializer,
        responses={200: s.ProductOutputSerializer, **write()},
        tags=["products"],
    )
    def patch(self, request, slug):
        product = access.access_product_by_slug(request.user, slug)
        data = valid(s.ProductUpdateInputSerializer, request.data)
        product = services.product_update(actor=actor(request), product=product, **data)
        return Response(s.ProductOutputSerializer(product).data)


# --- subscriptions ------------------------------------------------------------------


class ApplicationSubscriptionListCreateApi(ListApi):
    @extend_schema(
        operation_id="application_subscriptions_list",
        responses={200: s.SubscriptionOutputSerializer(many=True), **read(403)},
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
        responses={201: s.SubscriptionOutputSerializer, **write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        app = access.access_application_by_id(request.user, id)
        data = valid(s.SubscriptionRequestInputSerializer, request.data)
        product = access.access_product_by_slug(request.user, data["product"])
        sub = services.subscription_request(actor=actor(request), application=app, product=product)
        return Response(s.SubscriptionOutputSerializer(sub).data, status=status.HTTP_201_CREATED)


class SubscriptionListApi(ListApi):
    @extend_schema(
        operation_id="subscriptions_list",
        summary="Subscriptions of my applications and to my products",
        parameters=[s.SubscriptionFilterSerializer],
        responses={200: s.SubscriptionOutputSerializer(many=True), **errors(400, 401)},
        tags=["subscriptions"],
    )
    def get(self, request):
        filters = valid(s.SubscriptionFilterSerializer, request.query_params)
        subs = access.subscriptions_visible_to(request.user)
        if "status" in filters:
            subs = subs.filter(status=filters["status"])
        return self.paginated(_subscriptions(subs), s.SubscriptionOutputSerializer)


class SubscriptionApproveApi(BaseApi):
    @extend_schema(
        operation_id="subscriptions_approve",
        request=s.ReasonInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        sub = access.access_subscription_by_id(request.user, id)
        data = valid(s.ReasonInputSerializer, request.data)
        sub = services.subscription_decide(
            actor=actor(request), subscription=sub, approve=True, reason=data["reason"]
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


class SubscriptionRejectApi(BaseApi):
    @extend_schema(
        operation_id="subscriptions_reject",
        request=s.RejectInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **write()},
        tags=["subscriptions"],
    )
    def post(self, request, id):
        sub = access.access_subscription_by_id(request.user, id)
        data = valid(s.RejectInputSerializer, request.data)
        sub = services.subscription_decide(
            actor=actor(request), subscription=sub, approve=False, reason=data["reason"]
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


class _SubscriptionStatusApi(BaseApi):
    target_status: str

    def set_status(self, request, id) -> Response:
        sub = access.access_subscription_by_id(request.user, id)
        data = valid(s.ReasonInputSerializer, request.data)
        sub = services.subscription_set_status(
            actor=actor(request), subscription=sub, status=self.target_status, **data
        )
        return Response(s.SubscriptionOutputSerializer(sub).data)


def _status_schema(name: str, summary: str):
    return extend_schema(
        operation_id=f"subscriptions_{name}",
        summary=summary,
        request=s.ReasonInputSerializer,
        responses={200: s.SubscriptionOutputSerializer, **write()},
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

"""Response cache policies, and purging a tenant's cached answers.

Everyone reads the operator-wide policies and those of the operator's products they see;
members read those of their tenants' products; staff read all. Setting and removing a policy
is the product manager's (portal.services.cache checks and audits): a policy of another
tenant's product is a 404, one the caller sees but may not change a 403. Purging is for the
tenant's owners and admins (`cache.purge`).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from gateway.models import CachePolicy
from portal import access, services
from portal.api import serializers_cache as sc
from portal.api.views.base import BaseApi, ListApi, actor, errors, read, valid, write


def _set(request, **kwargs) -> CachePolicy:
    try:
        return services.cache_policy_set(actor=actor(request), **kwargs)
    except services.PolicyInvalid as exc:
        raise exceptions.ValidationError({k: [v] for k, v in exc.errors.items()}) from exc


def _policy(request, policy_id: int) -> CachePolicy:
    return services.access_cache_policy_by_id(request.user, policy_id)


class CachePolicyListSetApi(ListApi):
    @extend_schema(
        operation_id="cache_policies_list",
        summary="The response cache policies visible to me",
        responses={200: sc.CachePolicyOutputSerializer(many=True), **errors(401)},
        tags=["cache"],
    )
    def get(self, request):
        policies = (
            services.cache_policies_visible_to(request.user)
            .select_related("product")
            .order_by("product__slug", "model_name", "pk")
        )
        return self.paginated(policies, sc.CachePolicyOutputSerializer)

    @extend_schema(
        operation_id="cache_policies_set",
        summary="Set the cache policy of a product (or, for the operator, of every product)",
        description=(
            "Creates the policy of (product, model_name) (201) or changes the one there is "
            "(200). Fields left out keep their current values. A product's policy is set by "
            "its tenant's owners and admins, or by the operator for model products; a policy "
            "without a product applies to every caller and is the operator's."
        ),
        request=sc.CachePolicySetInputSerializer,
        responses={
            200: sc.CachePolicyOutputSerializer,
            201: sc.CachePolicyOutputSerializer,
            **write(),
        },
        tags=["cache"],
    )
    def post(self, request):
        data = dict(valid(sc.CachePolicySetInputSerializer, request.data))
        slug = data.pop("product")
        product = access.access_product_by_slug(request.user, slug) if slug else None
        model_name = data.pop("model_name").strip()
        existing = CachePolicy.objects.filter(product=product, model_name=model_name).exists()
        policy = _set(request, product=product, model_name=model_name, **data)
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return Response(sc.CachePolicyOutputSerializer(policy).data, status=code)


class CachePolicyDetailApi(BaseApi):
    @extend_schema(
        operation_id="cache_policies_retrieve",
        responses={200: sc.CachePolicyOutputSerializer, **read()},
        tags=["cache"],
    )
    def get(self, request, id):
        return Response(sc.CachePolicyOutputSerializer(_policy(request, id)).data)

    @extend_schema(
        operation_id="cache_policies_update",
        summary="Change a cache policy (its product and model stay)",
        request=sc.CachePolicyFieldsInputSerializer,
        responses={200: sc.CachePolicyOutputSerializer, **write()},
        tags=["cache"],
    )
    def patch(self, request, id):
        policy = _policy(request, id)
        data = valid(sc.CachePolicyFieldsInputSerializer, request.data)
        policy = _set(request, product=policy.product, model_name=policy.model_name, **data)
        return Response(sc.CachePolicyOutputSerializer(policy).data)

    @extend_schema(
        operation_id="cache_policies_delete",
        request=None,
        responses={204: None, **write()},
        tags=["cache"],
    )
    def delete(self, request, id):
        services.cache_policy_delete(actor=actor(request), policy=_policy(request, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantCachePurgeApi(BaseApi):
    @extend_schema(
        operation_id="tenant_cache_purge",
        summary="Drop every cached answer of a tenant, in every gateway process",
        request=None,
        responses={200: sc.CachePurgeOutputSerializer, **errors(401, 403, 404, 503)},
        tags=["cache"],
    )
    def post(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        try:
            removed = services.cache_purge(actor=actor(request), tenant=tenant)
        except services.PurgeFailed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(sc.CachePurgeOutputSerializer({"removed": removed}).data)

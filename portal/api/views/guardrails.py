"""Guardrail policies: the checks the gateway runs on requests and answers.

Everyone reads the operator's floor; members read the policies of their tenant, of its keys
and of its products; staff read all. Setting and removing is for the tenant's owners and
admins (`guardrail.manage`), and for the operator alone at the operator scope
(portal.services.guardrails checks and audits): another tenant's policy, tenant, product or
key is a 404, one the caller sees but may not change a 403.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from gateway.models import GuardrailPolicy
from portal import access, services
from portal.api import serializers_guardrails as sg
from portal.api.views.base import BaseApi, ListApi, actor, errors, read, valid, write


def _set(request, **kwargs) -> GuardrailPolicy:
    try:
        return services.guardrail_policy_set(actor=actor(request), **kwargs)
    except services.GuardrailInvalid as exc:
        raise exceptions.ValidationError(exc.errors) from exc


def _policy(request, policy_id: int) -> GuardrailPolicy:
    return services.access_guardrail_policy_by_id(request.user, policy_id)


def _owners(request, data: dict) -> dict:
    """The tenant, product and key the body names, reached as the caller sees them."""
    user = request.user
    tenant, product, key = data.pop("tenant"), data.pop("product"), data.pop("api_key")
    return {
        "tenant": access.access_tenant_by_slug(user, tenant) if tenant else None,
        "product": access.access_product_by_slug(user, product) if product else None,
        "api_key": access.access_api_key_by_id(user, key) if key is not None else None,
    }


class GuardrailPolicyListSetApi(ListApi):
    @extend_schema(
        operation_id="guardrail_policies_list",
        summary="The guardrail policies visible to me",
        responses={200: sg.GuardrailPolicyOutputSerializer(many=True), **errors(401)},
        tags=["guardrails"],
    )
    def get(self, request):
        policies = (
            services.guardrail_policies_visible_to(request.user)
            .select_related("tenant", "product", "api_key")
            .order_by("scope", "name", "pk")
        )
        return self.paginated(policies, sg.GuardrailPolicyOutputSerializer)

    @extend_schema(
        operation_id="guardrail_policies_set",
        summary="Set a guardrail policy",
        description=(
            "Creates the policy (scope, name) (201) or changes the one there is (200). "
            "A tenant policy names its `tenant` (slug), a product policy its `product` (slug), "
            "a key policy its `api_key` (id); an operator policy none, and only the operator "
            "sets it. Each request runs every operator policy plus the most specific of its "
            "key's, product's and tenant's."
        ),
        request=sg.GuardrailPolicySetInputSerializer,
        responses={
            200: sg.GuardrailPolicyOutputSerializer,
            201: sg.GuardrailPolicyOutputSerializer,
            **write(),
        },
        tags=["guardrails"],
    )
    def post(self, request):
        data = dict(valid(sg.GuardrailPolicySetInputSerializer, request.data))
        owners = _owners(request, data)
        existing = GuardrailPolicy.objects.filter(scope=data["scope"], name=data["name"]).exists()
        policy = _set(request, **owners, **data)
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return Response(sg.GuardrailPolicyOutputSerializer(policy).data, status=code)


class GuardrailPolicyDetailApi(BaseApi):
    @extend_schema(
        operation_id="guardrail_policies_retrieve",
        responses={200: sg.GuardrailPolicyOutputSerializer, **read()},
        tags=["guardrails"],
    )
    def get(self, request, id):
        return Response(sg.GuardrailPolicyOutputSerializer(_policy(request, id)).data)

    @extend_schema(
        operation_id="guardrail_policies_update",
        summary="Change a guardrail policy's checks or switch it on or off",
        request=sg.GuardrailPolicyFieldsInputSerializer,
        responses={200: sg.GuardrailPolicyOutputSerializer, **write()},
        tags=["guardrails"],
    )
    def patch(self, request, id):
        policy = _policy(request, id)
        data = valid(sg.GuardrailPolicyFieldsInputSerializer, request.data)
        policy = _set(
            request,
            scope=policy.scope,
            name=policy.name,
            tenant=policy.tenant,
            product=policy.product,
            api_key=policy.api_key,
            checks=data.get("checks", policy.checks),
            enabled=data.get("enabled", policy.enabled),
        )
        return Response(sg.GuardrailPolicyOutputSerializer(policy).data)

    @extend_schema(
        operation_id="guardrail_policies_delete",
        request=None,
        responses={204: None, **write()},
        tags=["guardrails"],
    )
    def delete(self, request, id):
        services.guardrail_policy_delete(actor=actor(request), policy=_policy(request, id))
        return Response(status=status.HTTP_204_NO_CONTENT)

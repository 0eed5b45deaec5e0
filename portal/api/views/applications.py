"""Applications and their API keys."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from portal import access, services
from portal.api import serializers as s
from portal.api.views.base import BaseApi, ListApi, actor, read, valid, write
from portal.models import ApiKey


class ApplicationListCreateApi(ListApi):
    @extend_schema(
        operation_id="applications_list",
        responses={200: s.ApplicationOutputSerializer(many=True), **read(403)},
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
        responses={201: s.ApplicationOutputSerializer, **write()},
        tags=["applications"],
    )
    def post(self, request, slug):
        tenant = access.access_tenant_by_slug(request.user, slug)
        data = valid(s.ApplicationCreateInputSerializer, request.data)
        app = services.application_create(actor=actor(request), tenant=tenant, **data)
        return Response(s.ApplicationOutputSerializer(app).data, status=status.HTTP_201_CREATED)


class ApplicationDetailApi(BaseApi):
    @extend_schema(
        operation_id="applications_retrieve",
        responses={200: s.ApplicationOutputSerializer, **read(403)},
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
        responses={200: s.ApiKeyOutputSerializer(many=True), **read(403)},
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
        responses={201: s.IssuedApiKeyOutputSerializer, **write()},
        tags=["keys"],
    )
    def post(self, request, id):
        app = access.access_application_by_id(request.user, id)
        data = valid(s.ApiKeyCreateInputSerializer, request.data)
        issued = services.api_key_create(
            actor=actor(request), tenant=app.tenant, application=app, **data
        )
        return Response(s.IssuedApiKeyOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class ApiKeyRotateApi(BaseApi):
    @extend_schema(
        operation_id="keys_rotate",
        summary="Replace a key; the old one works for the grace period",
        request=s.ApiKeyRotateInputSerializer,
        responses={201: s.IssuedApiKeyOutputSerializer, **write()},
        tags=["keys"],
    )
    def post(self, request, id):
        api_key = access.access_api_key_by_id(request.user, id)
        data = valid(s.ApiKeyRotateInputSerializer, request.data)
        issued = services.api_key_rotate(
            actor=actor(request),
            api_key=api_key,
            grace=timedelta(seconds=data["grace_seconds"]),
        )
        return Response(s.IssuedApiKeyOutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(BaseApi):
    @extend_schema(
        operation_id="keys_revoke",
        request=None,
        responses={200: s.ApiKeyOutputSerializer, **write()},
        tags=["keys"],
    )
    def post(self, request, id):
        api_key = access.access_api_key_by_id(request.user, id)
        services.api_key_revoke(actor=actor(request), api_key=api_key)
        api_key.refresh_from_db()
        return Response(s.ApiKeyOutputSerializer(api_key).data)

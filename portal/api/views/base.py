"""Plumbing shared by the API views: base classes, the acting user, input validation and
the documented error answers."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from portal import services
from portal.api import serializers as s
from portal.api.auth import PersonalAccessTokenAuthentication


def actor(request) -> services.Actor:
    return services.Actor(request.user, request.META.get("REMOTE_ADDR"))


def errors(*codes: int) -> dict:
    """Documented error answers: 400 carries field errors, the others a `detail`."""
    return {code: OpenApiTypes.OBJECT if code == 400 else s.ErrorOutputSerializer for code in codes}


def read(*extra: int) -> dict:
    return errors(401, 404, *extra)


def write(*extra: int) -> dict:
    # 415: a body in a media type the parsers do not take (or a multipart one they cannot read).
    return errors(400, 401, 403, 404, 415, *extra)


class BaseApi(APIView):
    # Tokens first: scripts get 401 + `WWW-Authenticate: Bearer` rather than a bare 403.
    authentication_classes = [PersonalAccessTokenAuthentication, SessionAuthentication]


class ListApi(BaseApi):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def paginated(self, queryset, serializer_class) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


def valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data

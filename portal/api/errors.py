"""Domain errors of the services, answered as DRF errors."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from portal.access import Denied
from portal.services import ServiceError


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        exc = exceptions.ValidationError({"detail": str(exc)})
    elif isinstance(exc, Denied):
        exc = exceptions.PermissionDenied(str(exc))
    return drf_exception_handler(exc, context)

"""Structured logs: one JSON object per line, with the request id of the call being served
(the gateway's consumers and Django's middleware set it) on every line."""

from __future__ import annotations

import contextvars
import logging
import uuid

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware
from pythonjsonlogger.json import JsonFormatter

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class Json(JsonFormatter):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level",
                                            "name": "logger"})  # fmt: skip
        super().__init__("%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s", **kwargs)


def _request_id(request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex


@sync_and_async_middleware
def request_id_middleware(get_response):
    """Django's side: the X-Request-Id the client sent (if sane) or a new one, in the logs
    and on the response. Both kinds, so async views (the playground's stream) stay async."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            rid = _request_id(request)
            token = request_id.set(rid)
            try:
                response = await get_response(request)
            finally:
                request_id.reset(token)
            response.headers.setdefault("X-Request-Id", rid)
            return response

    else:

        def middleware(request):
            rid = _request_id(request)
            token = request_id.set(rid)
            try:
                response = get_response(request)
            finally:
                request_id.reset(token)
            response.headers.setdefault("X-Request-Id", rid)
            return response

    return middleware

"""OpenTelemetry spans per stage of a call, exported over OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT is set. Off (the default), `span()` hands back one shared no-op
context manager: nothing is imported, allocated or recorded.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

_NOOP = contextlib.nullcontext()
_tracer: Any = None


def setup(exporter: Any = None) -> None:
    """Turn tracing on: with `exporter` (tests), else OTLP to the configured endpoint."""
    global _tracer
    if exporter is None and not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("tracing: OTLP spans to %s", endpoint)
    _tracer = provider.get_tracer("waystation.gateway")


def teardown() -> None:
    global _tracer
    _tracer = None


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager:
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, attributes=attributes)

"""Monthly cost reports: JSON, or the CSV / PDF file with `?format=csv|pdf`."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from billing import report_files, reports
from portal import access
from portal.api import serializers as s
from portal.api.views.base import BaseApi, read


class _FileRenderer(BaseRenderer):
    """The view renders the file itself; errors are answered as JSON (see finalize_response)."""

    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class CsvRenderer(_FileRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"


class PdfRenderer(_FileRenderer):
    media_type = "application/pdf"
    format = "pdf"


FILES = {
    "csv": report_files.report_csv,
    "pdf": report_files.report_pdf,
}


def report_month(text: str) -> tuple[int, int]:
    """A month that has begun, or 400."""
    try:
        year, month = reports.parse_month(text)
    except ValueError as exc:
        raise exceptions.ValidationError({"month": [str(exc)]}) from None
    now = timezone.now()
    if (year, month) > (now.year, now.month):
        raise exceptions.ValidationError({"month": ["That month has not begun."]})
    return year, month


def _json_errors(*codes: int) -> dict:
    """Errors are JSON whatever format was asked for."""
    return {(code, "application/json"): schema for code, schema in read(*codes).items()}


class CostReportApi(BaseApi):
    renderer_classes = [JSONRenderer, CsvRenderer, PdfRenderer]

    @extend_schema(
        operation_id="cost_reports_retrieve",
        summary="A tenant's cost report for one month (UTC): totals, breakdowns, trend",
        description=(
            "Totals equal the sum of the month's usage events exactly; each breakdown (by "
            "application, key, model) sums to the total. `?format=csv` or `?format=pdf` (or "
            "`Accept: text/csv` / `application/pdf`) returns the report as a file instead."
        ),
        parameters=[
            OpenApiParameter(
                "month",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="YYYY-MM, a month that has begun.",
            ),
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                enum=["json", "csv", "pdf"],
                description="json (the default), csv or pdf.",
            ),
        ],
        responses={
            (200, "application/json"): s.CostReportOutputSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/pdf"): OpenApiTypes.BINARY,
            **_json_errors(400, 403),
        },
        tags=["reports"],
    )
    def get(self, request, slug, month):
        tenant = access.access_tenant_by_slug(request.user, slug)
        access.require(request.user, tenant, "usage.view")
        year, number = report_month(month)
        report = reports.monthly_report(tenant, year, number)
        fmt = request.accepted_renderer.format
        if fmt in FILES:
            name = report_files.filename(report, fmt)
            return Response(
                FILES[fmt](report),
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return Response(report.as_dict())

    def finalize_response(self, request, response, *args, **kwargs):
        renderer = getattr(request, "accepted_renderer", None)
        if isinstance(renderer, _FileRenderer) and response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

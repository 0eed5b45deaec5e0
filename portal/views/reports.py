"""Monthly cost reports: the month picker, one month's report, its CSV and PDF, and the
tenant's chargeback webhook (billing.report_webhooks)."""

from __future__ import annotations

import calendar

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing import report_files, report_webhooks, reports
from billing.models import ReportWebhook
from portal import access
from portal.services import ServiceError
from portal.views.common import actor, fail, portal_view, secret_page, tenant_page

FILES = {
    "csv": ("text/csv; charset=utf-8", report_files.report_csv),
    "pdf": ("application/pdf", report_files.report_pdf),
}


class ReportWebhookForm(forms.Form):
    url = forms.URLField(
        label="Webhook URL",
        max_length=500,
        assume_scheme="https",
        help_text="Each month's report is POSTed here as JSON on the 1st, signed with HMAC.",
    )
    enabled = forms.BooleanField(label="Send reports", required=False, initial=True)
    rotate_secret = forms.BooleanField(label="Make a new signing secret", required=False)


def _month_or_404(text: str) -> tuple[int, int]:
    try:
        year, month = reports.parse_month(text)
    except ValueError:
        raise Http404("No such month.") from None
    now = timezone.now()
    if (year, month) > (now.year, now.month):
        raise Http404("That month has not begun.")
    return year, month


def _index(request, tenant, *, form=None, secret=None):
    webhook = ReportWebhook.objects.filter(tenant=tenant).first()
    can_manage = access.can(request.user, tenant, "budget.manage")
    if form is None and can_manage:
        initial = {"url": webhook.url, "enabled": webhook.enabled} if webhook else None
        form = ReportWebhookForm(initial=initial)
    months = [
        {"label": reports.month_label(y, m), "title": f"{calendar.month_name[m]} {y}"}
        for y, m in reports.recent_months(12)
    ]
    context = {
        "tenant": tenant,
        "months": months,
        "webhook": webhook,
        "can_manage": can_manage,
        "form": form,
        "secret": secret,
        "signature_header": report_webhooks.SIGNATURE_HEADER,
    }
    response = render(request, "portal/reports.html", context)
    return secret_page(response) if secret else response


@portal_view
@require_GET
def reports_page(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    if "month" in request.GET:
        try:
            year, month = reports.parse_month(request.GET["month"])
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            return redirect(
                "portal:report", slug=tenant.slug, month=reports.month_label(year, month)
            )
    return _index(request, tenant)


@portal_view
@require_POST
def report_webhook_save(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    access.require(request.user, tenant, "budget.manage")
    form = ReportWebhookForm(request.POST)
    if not form.is_valid():
        return _index(request, tenant, form=form)
    try:
        _, secret = report_webhooks.report_webhook_set(
            actor=actor(request), **form.cleaned_data, tenant=tenant
        )
    except ServiceError as exc:
        return fail(request, str(exc), reverse("portal:reports", args=[tenant.slug]))
    messages.success(request, "Chargeback webhook saved.")
    return _index(request, tenant, secret=secret)


@portal_view
@require_GET
def report_page(request, slug, month):
    tenant = tenant_page(request, slug, "usage.view")
    year, number = _month_or_404(month)
    report = reports.monthly_report(tenant, year, number)
    sections = [
        {"id": "by-application", "name": "application", "lines": report.by_application},
        {"id": "by-key", "name": "key", "lines": report.by_key},
        {"id": "by-model", "name": "model", "lines": report.by_model},
    ]
    context = {"tenant": tenant, "report": report, "sections": sections}
    return render(request, "portal/report.html", context)


@portal_view
@require_GET
def report_download(request, slug, month, fmt):
    tenant = tenant_page(request, slug, "usage.view")
    if fmt not in FILES:
        raise Http404("No such format.")
    year, number = _month_or_404(month)
    report = reports.monthly_report(tenant, year, number)
    content_type, render_file = FILES[fmt]
    response = HttpResponse(render_file(report), content_type=content_type)
    name = report_files.filename(report, fmt)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

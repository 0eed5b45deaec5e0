"""Budgets and rate limits of a tenant: every member sees them and how full each budget is;
owners and admins (`budget.manage`) set, change and remove them through billing.controls,
which checks the role again and audits."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing import controls
from billing import selectors as billing
from billing.models import Budget
from gateway.models import LanguageModel
from portal import access
from portal.forms_budgets import BudgetForm, RateLimitForm
from portal.services import ServiceError
from portal.views.common import actor, portal_view, tenant_page


def _model_names() -> list[str]:
    return list(
        LanguageModel.objects.filter(enabled=True).order_by("name").values_list("name", flat=True)
    )


def _id_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


def _budgets_page(request, tenant, *, budget_form=None, limit_form=None):
    can_manage = access.can(request.user, tenant, "budget.manage")
    models = _model_names() if can_manage else []
    if can_manage and budget_form is None:
        editing = _id_param(request, "budget")
        budget = billing.budget_in(tenant=tenant, budget_id=editing) if editing else None
        budget_form = BudgetForm.for_budget(budget) if budget else BudgetForm(tenant=tenant)
    if can_manage and limit_form is None:
        editing = _id_param(request, "limit")
        limit = billing.rate_limit_in(tenant=tenant, limit_id=editing) if editing else None
        limit_form = (
            RateLimitForm.for_limit(limit, models=models)
            if limit
            else RateLimitForm(tenant=tenant, models=models)
        )
    limits = list(billing.rate_limits_of(tenant=tenant))
    for limit in limits:
        limit.target = billing.target_label(limit)
    context = {
        "tenant": tenant,
        "can_manage": can_manage,
        "budgets": billing.budget_statuses(tenant=tenant),
        "limits": limits,
        "budget_form": budget_form,
        "limit_form": limit_form,
    }
    return render(request, "portal/budgets.html", context)


@portal_view
def budgets(request, slug):
    tenant = tenant_page(request, slug, "usage.view")
    return _budgets_page(request, tenant)


@portal_view
@require_POST
def budget_save(request, slug):
    tenant = tenant_page(request, slug, "budget.manage")
    form = BudgetForm(request.POST, tenant=tenant)
    if form.is_valid():
        kwargs = form.service_kwargs()
        # The page does not edit who is notified: a change keeps what the API set.
        existing = Budget.objects.filter(
            tenant=tenant,
            application=kwargs["application"],
            api_key=kwargs["api_key"],
            period=kwargs["period"],
        ).first()
        if existing is not None:
            kwargs["notify_emails"] = existing.notify_emails
            kwargs["webhook_url"] = existing.webhook_url
        try:
            budget = controls.budget_set(actor=actor(request), tenant=tenant, **kwargs)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            verb = "changed" if existing else "set"
            messages.success(request, f"Budget {verb}: {budget}.")
            return redirect("portal:budgets", slug=tenant.slug)
    return _budgets_page(request, tenant, budget_form=form)


@portal_view
@require_POST
def budget_remove(request, slug, budget_id):
    tenant = tenant_page(request, slug, "budget.manage")
    budget = billing.budget_in(tenant=tenant, budget_id=budget_id)
    if budget is None:
        raise Http404("No such budget.")
    label = str(budget)
    controls.budget_delete(actor=actor(request), budget=budget)
    messages.success(request, f"Removed the {label}.")
    return redirect("portal:budgets", slug=tenant.slug)


@portal_view
@require_POST
def rate_limit_save(request, slug):
    tenant = tenant_page(request, slug, "budget.manage")
    form = RateLimitForm(request.POST, tenant=tenant, models=_model_names())
    if form.is_valid():
        try:
            limit = controls.rate_limit_set(
                actor=actor(request), tenant=tenant, **form.service_kwargs()
            )
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the {limit}.")
            return redirect("portal:budgets", slug=tenant.slug)
    return _budgets_page(request, tenant, limit_form=form)


@portal_view
@require_POST
def rate_limit_remove(request, slug, limit_id):
    tenant = tenant_page(request, slug, "budget.manage")
    limit = billing.rate_limit_in(tenant=tenant, limit_id=limit_id)
    if limit is None:
        raise Http404("No such rate limit.")
    label = str(limit)
    controls.rate_limit_delete(actor=actor(request), limit=limit)
    messages.success(request, f"Removed the {label}.")
    return redirect("portal:budgets", slug=tenant.slug)

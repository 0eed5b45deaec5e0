"""Guardrail policies in the portal: a tenant's (its own, its keys' and its products'), for
its owners and admins, and the operator's floor, for staff.

portal.services.guardrails checks who may do what and audits; the form here parses the
checks (JSON or YAML) and the service's field errors land on the same fields.
"""

from __future__ import annotations

import json

import yaml
from django import forms
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from gateway.models import GuardrailPolicy
from portal import access, services
from portal.models import ApiKey, Product
from portal.views.common import actor, portal_view, tenant_page

Scope = GuardrailPolicy.Scope
TENANT_TARGET = "tenant"
EXAMPLE = '[{"check": "pii", "stage": "input", "action": "block"}]'


class GuardrailPolicyForm(forms.Form):
    target = forms.ChoiceField(label="Applies to")
    name = forms.SlugField(
        label="Name",
        max_length=100,
        help_text="Letters, digits, hyphens and underscores; setting a name again changes it.",
    )
    use_default = forms.BooleanField(
        label="Use the default preset",
        required=False,
        help_text="PII redaction on requests and answers, and injection blocking on requests.",
    )
    checks = forms.CharField(
        label="Checks (JSON or YAML)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
        help_text=(
            "A list of {check: pii|injection|moderation, stage: input|output|both, "
            f"action: block|redact|flag}}, for example {EXAMPLE}."
        ),
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, targets: list[tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if targets is None:
            del self.fields["target"]
        else:
            self.fields["target"].choices = targets

    def clean(self):
        data = super().clean()
        if data.get("use_default"):
            data["parsed"] = "default"
            return data
        text = (data.get("checks") or "").strip()
        if not text:
            self.add_error("checks", "Give the checks, or use the default preset.")
            return data
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
            self.add_error("checks", f"The checks are neither valid JSON nor YAML{at}.")
            return data
        try:  # as the API would store them: string keys, no dates or other YAML types
            data["parsed"] = json.loads(json.dumps(parsed))
        except (TypeError, ValueError):
            self.add_error("checks", "The checks may hold only strings, numbers, lists and maps.")
        return data


def _initial(policy: GuardrailPolicy | None) -> dict:
    if policy is None:
        return {"enabled": True, "target": TENANT_TARGET}
    default = policy.checks == "default"
    return {
        "target": _target_of(policy),
        "name": policy.name,
        "use_default": default,
        "checks": "" if default else json.dumps(policy.checks, indent=2),
        "enabled": policy.enabled,
    }


def _target_of(policy: GuardrailPolicy) -> str:
    if policy.scope == Scope.KEY:
        return f"key:{policy.api_key_id}"
    if policy.scope == Scope.PRODUCT:
        return f"product:{policy.product_id}"
    return TENANT_TARGET


def _save(request, form: GuardrailPolicyForm, **owner) -> GuardrailPolicy | None:
    """The policy the valid form sets, or None with the errors on the form."""
    if not form.is_valid():
        return None
    try:
        return services.guardrail_policy_set(
            actor=actor(request),
            name=form.cleaned_data["name"],
            checks=form.cleaned_data["parsed"],
            enabled=form.cleaned_data["enabled"],
            **owner,
        )
    except services.GuardrailInvalid as exc:
        for field, problems in exc.errors.items():
            if field in ("tenant", "product", "api_key", "scope"):
                field = "target"
            for problem in problems:
                form.add_error(field if field in form.fields else None, problem)
    except services.ServiceError as exc:
        form.add_error(None, str(exc))
    return None


def _label(policy: GuardrailPolicy) -> str:
    return f"{policy.name} ({policy.get_scope_display().lower()})"


def _summary(checks) -> str:
    if checks == "default":
        return "the default preset"
    if not isinstance(checks, list):
        return "?"
    parts = []
    for c in checks:
        if isinstance(c, dict):
            parts.append(f"{c.get('check')} {c.get('action')} on {c.get('stage', 'both')}")
    return "; ".join(parts)


def _rows(policies) -> list[dict]:
    return [{"policy": p, "summary": _summary(p.checks), "owner": _owner(p)} for p in policies]


def _owner(policy: GuardrailPolicy) -> str:
    if policy.scope == Scope.TENANT:
        return policy.tenant.name if policy.tenant else ""
    if policy.scope == Scope.PRODUCT:
        return policy.product.name if policy.product else ""
    if policy.scope == Scope.KEY:
        return f"{policy.api_key.name} ({policy.api_key.prefix}…)" if policy.api_key else ""
    return "every request"


def _policy_in(queryset, value: str) -> GuardrailPolicy | None:
    return queryset.filter(pk=int(value)).first() if value.isdigit() else None


# --- a tenant's policies ---------------------------------------------------------------


def _tenant_policies(tenant):
    return (
        GuardrailPolicy.objects.filter(
            Q(scope=Scope.TENANT, tenant=tenant)
            | Q(scope=Scope.KEY, api_key__tenant=tenant)
            | Q(scope=Scope.PRODUCT, product__owner=tenant)
        )
        .select_related("tenant", "product", "api_key")
        .order_by("scope", "name", "pk")
    )


def _targets(tenant) -> tuple[list[tuple[str, str]], dict]:
    """The form's choices and what each names."""
    choices = [(TENANT_TARGET, f"All of {tenant.name} (the tenant)")]
    owners: dict[str, dict] = {TENANT_TARGET: {"scope": Scope.TENANT, "tenant": tenant}}
    keys = ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).order_by("name", "pk")
    for key in keys:
        value = f"key:{key.pk}"
        choices.append((value, f"Key {key.name} ({key.prefix}…)"))
        owners[value] = {"scope": Scope.KEY, "api_key": key}
    for product in Product.objects.filter(owner=tenant).order_by("name", "pk"):
        value = f"product:{product.pk}"
        choices.append((value, f"Product {product.name}"))
        owners[value] = {"scope": Scope.PRODUCT, "product": product}
    return choices, owners


def _tenant_page(request, tenant, *, form=None, status: int = 200):
    policies = _tenant_policies(tenant)
    if form is None:
        editing = _policy_in(policies, request.GET.get("policy", ""))
        form = GuardrailPolicyForm(targets=_targets(tenant)[0], initial=_initial(editing))
    floor = GuardrailPolicy.objects.filter(scope=Scope.OPERATOR).order_by("name", "pk")
    context = {
        "tenant": tenant,
        "rows": _rows(policies),
        "floor_rows": _rows(floor),
        "form": form,
    }
    return render(request, "portal/guardrails_tenant.html", context, status=status)


@portal_view
def tenant_guardrails(request, slug):
    tenant = tenant_page(request, slug, "guardrail.manage")
    return _tenant_page(request, tenant)


@portal_view
@require_POST
def tenant_guardrail_save(request, slug):
    tenant = tenant_page(request, slug, "guardrail.manage")
    choices, owners = _targets(tenant)
    form = GuardrailPolicyForm(request.POST, targets=choices)
    owner = owners.get(request.POST.get("target", ""), {"scope": Scope.TENANT, "tenant": tenant})
    policy = _save(request, form, **owner)
    if policy is None:
        return _tenant_page(request, tenant, form=form, status=400)
    messages.success(request, f"Saved the guardrail policy {_label(policy)}.")
    return redirect("portal:tenant_guardrails", slug=tenant.slug)


# --- the operator's floor --------------------------------------------------------------


def _require_operator(request) -> None:
    if not request.user.is_staff:
        raise access.Denied("Only the platform operator sets operator guardrail policies.")


def _operator_page(request, *, form=None, status: int = 200):
    floor = GuardrailPolicy.objects.filter(scope=Scope.OPERATOR).order_by("name", "pk")
    if form is None:
        editing = _policy_in(floor, request.GET.get("policy", ""))
        form = GuardrailPolicyForm(initial=_initial(editing))
    others = (
        GuardrailPolicy.objects.exclude(scope=Scope.OPERATOR)
        .select_related("tenant", "product__owner", "api_key__tenant")
        .order_by("scope", "name", "pk")
    )
    context = {"rows": _rows(floor), "other_rows": _rows(others), "form": form}
    return render(request, "portal/guardrails.html", context, status=status)


@portal_view
def operator_guardrails(request):
    _require_operator(request)
    return _operator_page(request)


@portal_view
@require_POST
def operator_guardrail_save(request):
    _require_operator(request)
    form = GuardrailPolicyForm(request.POST)
    policy = _save(request, form, scope=Scope.OPERATOR)
    if policy is None:
        return _operator_page(request, form=form, status=400)
    messages.success(request, f"Saved the operator guardrail policy {_label(policy)}.")
    return redirect("portal:guardrails")


# --- switching on and off, removing ----------------------------------------------------


def _back(request, tenant):
    if tenant is not None and access.can(request.user, tenant, "guardrail.manage"):
        return redirect("portal:tenant_guardrails", slug=tenant.slug)
    return redirect("portal:guardrails")


@portal_view
@require_POST
def guardrail_toggle(request, policy_id):
    policy = services.access_guardrail_policy_by_id(request.user, policy_id)
    tenant = services.policy_tenant(policy)
    try:
        policy = services.guardrail_policy_set(
            actor=actor(request),
            scope=policy.scope,
            name=policy.name,
            checks=policy.checks,
            tenant=policy.tenant,
            product=policy.product,
            api_key=policy.api_key,
            enabled=not policy.enabled,
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        state = "Enabled" if policy.enabled else "Disabled"
        messages.success(request, f"{state} the guardrail policy {_label(policy)}.")
    return _back(request, tenant)


@portal_view
@require_POST
def guardrail_remove(request, policy_id):
    policy = services.access_guardrail_policy_by_id(request.user, policy_id)
    tenant = services.policy_tenant(policy)
    label = _label(policy)
    services.guardrail_policy_delete(actor=actor(request), policy=policy)
    messages.success(request, f"Removed the guardrail policy {label}.")
    return _back(request, tenant)

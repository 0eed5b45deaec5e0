"""Forms of the budgets and limits page: they validate input; billing.controls applies the
rules (and audits).

A target is one select: the tenant, one of its applications or one of its keys, offered only
from the tenant's own objects, so another tenant's ids are not a valid choice.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.db.models import Q

from billing.models import Budget, RateLimit
from portal.models import ApiKey, Application, Tenant

TENANT_TARGET = "tenant"
THRESHOLDS_HELP = "Percentages from 1 to 100, separated by commas; leave empty for no notices."


def target_value(obj: Budget | RateLimit) -> str:
    """The select value of an existing budget's or limit's target."""
    if obj.api_key_id:
        return f"key:{obj.api_key_id}"
    if obj.application_id:
        return f"app:{obj.application_id}"
    return TENANT_TARGET


def _target_choices(tenant: Tenant, keep: str | None = None) -> list:
    apps = list(tenant.applications.order_by("name", "pk"))
    keys = list(_keys(tenant, keep))
    choices: list = [(TENANT_TARGET, f"The whole tenant ({tenant.name})")]
    if apps:
        choices.append(("Applications", [(f"app:{app.pk}", app.name) for app in apps]))
    if keys:
        key_choices = []
        for key in keys:
            owner = f" · {key.application.name}" if key.application else ""
            revoked = " (revoked)" if key.revoked_at else ""
            key_choices.append((f"key:{key.pk}", f"{key.name} ({key.prefix}…){owner}{revoked}"))
        choices.append(("API keys", key_choices))
    return choices


def _keys(tenant: Tenant, keep: str | None):
    """The tenant's unrevoked keys, and the key `keep` names even when revoked (so an
    existing budget on it can still be changed)."""
    wanted = Q(revoked_at__isnull=True)
    if keep and keep.startswith("key:") and keep[4:].isdigit():
        wanted |= Q(pk=int(keep[4:]))
    keys = ApiKey.objects.filter(wanted, tenant=tenant).select_related("application")
    return keys.order_by("application__name", "name", "pk")


class TargetFormMixin:
    """The `target` field and its resolution into (application, api_key) of the tenant."""

    def _setup_target(self, tenant: Tenant) -> None:
        self.tenant = tenant
        keep = self.data.get(self.add_prefix("target")) or self.initial.get("target")
        self.fields["target"].choices = _target_choices(tenant, keep)

    def clean_target(self) -> tuple[Application | None, ApiKey | None]:
        value = self.cleaned_data["target"]
        if value == TENANT_TARGET:
            return None, None
        kind, _, pk = value.partition(":")
        if not pk.isdigit():
            kind = ""
        if kind == "app":
            app = self.tenant.applications.filter(pk=pk).first()
            if app is not None:
                return app, None
        if kind == "key":
            key = ApiKey.objects.filter(tenant=self.tenant, pk=pk).first()
            if key is not None:
                return None, key
        raise forms.ValidationError("Choose the tenant, one of its applications or keys.")


class BudgetForm(TargetFormMixin, forms.Form):
    target = forms.ChoiceField(label="Applies to")
    period = forms.ChoiceField(
        label="Period", choices=Budget.Period.choices, initial=Budget.Period.MONTHLY
    )
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=14,
        decimal_places=4,
        min_value=Decimal("0.0001"),
        error_messages={"min_value": "The budget must be a positive amount of dollars."},
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    thresholds = forms.CharField(
        label="Notify at (%)",
        required=False,
        initial="50,80,100",
        max_length=100,
        help_text=THRESHOLDS_HELP,
    )
    hard = forms.BooleanField(
        label="Hard: block calls once the budget is spent (429 budget_exceeded)",
        required=False,
        initial=True,
    )

    def __init__(self, *args, tenant: Tenant, **kwargs):
        kwargs.setdefault("prefix", "budget")
        super().__init__(*args, **kwargs)
        self._setup_target(tenant)

    @classmethod
    def for_budget(cls, budget: Budget) -> BudgetForm:
        """The form filled in with an existing budget, to change it."""
        return cls(
            tenant=budget.tenant,
            initial={
                "target": target_value(budget),
                "period": budget.period,
                "amount_usd": format(budget.amount_usd.normalize(), "f"),
                "thresholds": ",".join(str(t) for t in budget.thresholds or ()),
                "hard": budget.hard,
            },
        )

    def clean_thresholds(self) -> list[int]:
        raw = self.cleaned_data["thresholds"].strip()
        if not raw:
            return []
        parts = [p for p in re.split(r"[,\s]+", raw) if p]
        if not all(p.isdigit() for p in parts):
            raise forms.ValidationError("Write whole percentages separated by commas: 50,80,100.")
        marks = sorted({int(p) for p in parts})
        if any(not 1 <= mark <= 100 for mark in marks):
            raise forms.ValidationError("Thresholds are percentages from 1 to 100.")
        return marks

    def service_kwargs(self) -> dict:
        """The arguments of billing.controls.budget_set (but the actor and the tenant)."""
        data = self.cleaned_data
        application, api_key = data["target"]
        return {
            "application": application,
            "api_key": api_key,
            "period": data["period"],
            "amount_usd": data["amount_usd"],
            "thresholds": data["thresholds"],
            "hard": data["hard"],
        }


class RateLimitForm(TargetFormMixin, forms.Form):
    target = forms.ChoiceField(label="Applies to")
    model = forms.ChoiceField(label="Model", required=False)
    requests_per_minute = forms.IntegerField(
        label="Requests per minute", required=False, min_value=1
    )
    tokens_per_minute = forms.IntegerField(label="Tokens per minute", required=False, min_value=1)
    concurrent = forms.IntegerField(label="Concurrent requests", required=False, min_value=1)

    LIMITS = ("requests_per_minute", "tokens_per_minute", "concurrent")

    def __init__(self, *args, tenant: Tenant, models: list[str], **kwargs):
        kwargs.setdefault("prefix", "limit")
        super().__init__(*args, **kwargs)
        self._setup_target(tenant)
        # The catalog's models, and those the tenant's limits name (one may have left it).
        named = RateLimit.objects.filter(tenant=tenant).exclude(model="")
        names = set(models) | set(named.values_list("model", flat=True))
        self.fields["model"].choices = [("", "Every model"), *((n, n) for n in sorted(names))]

    @classmethod
    def for_limit(cls, limit: RateLimit, *, models: list[str]) -> RateLimitForm:
        return cls(
            tenant=limit.tenant,
            models=models,
            initial={
                "target": target_value(limit),
                "model": limit.model,
                "requests_per_minute": limit.requests_per_minute,
                "tokens_per_minute": limit.tokens_per_minute,
                "concurrent": limit.concurrent,
            },
        )

    def clean(self):
        data = super().clean()
        if not self.errors and all(data.get(name) is None for name in self.LIMITS):
            raise forms.ValidationError(
                "Set at least one limit: requests per minute, tokens per minute or concurrent "
                "requests. To lift all limits, remove the row instead."
            )
        return data

    def service_kwargs(self) -> dict:
        """The arguments of billing.controls.rate_limit_set (but the actor and the tenant)."""
        data = self.cleaned_data
        application, api_key = data["target"]
        return {
            "application": application,
            "api_key": api_key,
            "model": data["model"] or "",
            **{name: data[name] for name in self.LIMITS},
        }

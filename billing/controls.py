"""Budgets and rate limits: set and remove them (checked and audited), and what was spent.

The gateway enforces them from Redis (gateway.limits); these are the definitions it reads, and
the database's account of spending that its counters are reconciled from.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone

from billing.models import Budget, RateLimit, UsageEvent
from portal.models import ApiKey, Application, Tenant
from portal.services.common import Actor, ServiceError, _check, audit

DEFAULT_THRESHOLDS = (50, 80, 100)


def _target(
    tenant: Tenant, application: Application | None, api_key: ApiKey | None
) -> tuple[Application | None, ApiKey | None]:
    if application is not None and application.tenant_id != tenant.pk:
        raise ServiceError("That application belongs to another tenant.")
    if api_key is not None and api_key.tenant_id != tenant.pk:
        raise ServiceError("That key belongs to another tenant.")
    if application is not None and api_key is not None:
        raise ServiceError("Set a budget or limit on an application or on a key, not both.")
    return application, api_key


def budget_set(
    *,
    actor: Actor,
    tenant: Tenant,
    amount_usd: Decimal,
    period: str = Budget.Period.MONTHLY,
    application: Application | None = None,
    api_key: ApiKey | None = None,
    thresholds: list[int] | tuple[int, ...] = DEFAULT_THRESHOLDS,
    hard: bool = True,
    notify_emails: list[str] | tuple[str, ...] = (),
    webhook_url: str = "",
) -> Budget:
    """Create the target's budget for `period`, or change the one it has."""
    _check(actor, tenant, "budget.manage")
    application, api_key = _target(tenant, application, api_key)
    if period not in Budget.Period.values:
        raise ServiceError(f"The period must be one of {', '.join(Budget.Period.values)}.")
    amount = Decimal(str(amount_usd))
    if not amount.is_finite() or amount <= 0:
        raise ServiceError("The budget must be a positive amount of dollars.")
    marks = sorted({int(t) for t in thresholds})
    if any(not 1 <= t <= 100 for t in marks):
        raise ServiceError("Thresholds are percentages from 1 to 100.")
    if webhook_url:
        from billing.report_webhooks import check_webhook_url

        check_webhook_url(webhook_url)
    budget, created = Budget.objects.update_or_create(
        tenant=tenant,
        application=application,
        api_key=api_key,
        period=period,
        defaults={
            "amount_usd": amount,
            "thresholds": marks,
            "hard": hard,
            "notify_emails": list(notify_emails),
            "webhook_url": webhook_url,
        },
    )
    action = "budget.created" if created else "budget.changed"
    audit(actor=actor, tenant=tenant, action=action, target=budget, amount_usd=str(amount))
    return budget


def budget_delete(*, actor: Actor, budget: Budget) -> None:
    _check(actor, budget.tenant, "budget.manage")
    audit(actor=actor, tenant=budget.tenant, action="budget.deleted", target=budget)
    budget.delete()


def rate_limit_set(
    *,
    actor: Actor,
    tenant: Tenant,
    application: Application | None = None,
    api_key: ApiKey | None = None,
    model: str = "",
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    concurrent: int | None = None,
) -> RateLimit:
    """Create or change the limits of a target (and model); removing them is a delete."""
    _check(actor, tenant, "budget.manage")
    application, api_key = _target(tenant, application, api_key)
    values = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "concurrent": concurrent,
    }
    if all(value is None for value in values.values()):
        raise ServiceError("Set at least one limit; to lift them all, remove the row.")
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ServiceError(f"{name.replace('_', ' ')} must be a whole number of at least 1.")
    limit, created = RateLimit.objects.update_or_create(
        tenant=tenant, application=application, api_key=api_key, model=model, defaults=values
    )
    action = "rate_limit.created" if created else "rate_limit.changed"
    audit(actor=actor, tenant=tenant, action=action, target=limit, **values)
    return limit


def rate_limit_delete(*, actor: Actor, limit: RateLimit) -> None:
    _check(actor, limit.tenant, "budget.manage")
    audit(actor=actor, tenant=limit.tenant, action="rate_limit.deleted", target=limit)
    limit.delete()


def period_start(period: str, now: datetime | None = None) -> datetime | None:
    """Where the current period began (UTC); None for a total budget."""
    now = now or timezone.now()
    if period == Budget.Period.DAILY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Budget.Period.MONTHLY:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def budget_spent(budget: Budget, now: datetime | None = None) -> Decimal:
    """What counts against a budget in its current period, from the stored usage events."""
    return spent_since(
        tenant_id=budget.tenant_id,
        application_id=budget.application_id,
        api_key_id=budget.api_key_id,
        since=period_start(budget.period, now),
    )


def controls_for_key(key: ApiKey) -> tuple[list[RateLimit], list[Budget]]:
    """The rate limits and budgets a key's calls count against: its own, its application's
    and its tenant's."""
    mine = Q(api_key=key) | Q(application=None, api_key=None)
    if key.application_id:
        mine |= Q(application_id=key.application_id, api_key=None)
    limits = list(RateLimit.objects.filter(mine, tenant_id=key.tenant_id))
    budgets = list(Budget.objects.filter(mine, tenant_id=key.tenant_id))
    return limits, budgets


def spent_since(
    *,
    tenant_id: int,
    application_id: int | None = None,
    api_key_id: int | None = None,
    since: datetime | None = None,
) -> Decimal:
    """Cost recorded for a tenant, an application or a key, since a moment (or ever)."""
    events = UsageEvent.objects.filter(tenant_id=tenant_id)
    if api_key_id is not None:
        events = events.filter(api_key_id=api_key_id)
    elif application_id is not None:
        keys = ApiKey.objects.filter(application_id=application_id).values("pk")
        events = events.filter(api_key_id__in=keys)
    if since is not None:
        events = events.filter(created_at__gte=since)
    return events.aggregate(total=Sum("cost"))["total"] or Decimal(0)

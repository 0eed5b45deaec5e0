"""Budget thresholds: when stored usage crosses one (50, 80, 100 % ...), tell people once.

Each stored batch marks its tenants; a tenant's budgets are evaluated at most every
BUDGET_ALERT_INTERVAL_SECONDS per process (an aggregate over the period's events per budget is
not free), by the batch itself or by the `sweep` that the usage writers run every second, so a
crossing is noticed within that interval even when no more traffic follows. A notice row per
budget, period and threshold makes each notification go out once even when two workers see
the crossing at the same moment. It goes by email (the budget's addresses, else the tenant's
owners and admins) and, when there is one, to the budget's webhook or else the tenant's
webhook, signed with the tenant's webhook secret (billing.report_webhooks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from billing.controls import budget_spent, period_start
from billing.models import Budget, BudgetNotice, ReportWebhook
from portal.models import Membership, Role

log = logging.getLogger(__name__)

EVENT = "budget.threshold"
FOREVER = datetime(1970, 1, 1, tzinfo=UTC)  # the "period" of a total budget


_pending: set[int] = set()
_checked_at: dict[int, float] = {}
_lock = threading.Lock()


def note(tenant_ids: Iterable[int | None]) -> int:
    """These tenants spent: evaluate their budgets now, or at the next sweep when they were
    evaluated less than the interval ago. Returns the notifications sent."""
    with _lock:
        _pending.update(t for t in tenant_ids if t is not None)
    return sweep()


def sweep() -> int:
    """Evaluate the pending tenants whose interval has passed."""
    now = time.monotonic()
    interval = settings.BUDGET_ALERT_INTERVAL_SECONDS
    with _lock:
        due = {t for t in _pending if now - _checked_at.get(t, -interval) >= interval}
        _pending.difference_update(due)
        _checked_at.update(dict.fromkeys(due, now))
    return check(due) if due else 0


def check(tenant_ids: Iterable[int | None]) -> int:
    """Notify every threshold newly crossed by these tenants' budgets; returns how many."""
    ids = {t for t in tenant_ids if t is not None}
    if not ids:
        return 0
    sent = 0
    for budget in Budget.objects.filter(tenant_id__in=ids).select_related(
        "tenant", "application", "api_key"
    ):
        if not budget.thresholds:
            continue
        spent = budget_spent(budget)
        percent = spent / budget.amount_usd * 100
        start = period_start(budget.period) or FOREVER
        for threshold in budget.thresholds:
            if percent >= threshold and _claim(budget, start, threshold, spent):
                _notify(budget, threshold, spent)
                sent += 1
    return sent


def _claim(budget: Budget, start: datetime, threshold: int, spent: Decimal) -> bool:
    try:
        with transaction.atomic():
            _, created = BudgetNotice.objects.get_or_create(
                budget=budget,
                period_start=start,
                threshold=threshold,
                defaults={"spent_usd": spent},
            )
    except IntegrityError:  # another worker claimed it between the read and the write
        return False
    return created


def _notify(budget: Budget, threshold: int, spent: Decimal) -> None:
    subject = f"[Waystation] {threshold}% of the {budget} reached"
    text = (
        f"{budget} has reached {threshold}% of its amount: ${spent:.2f} of "
        f"${budget.amount_usd:.2f} spent this period.\n"
        + (
            "Calls are blocked once it is used up.\n"
            if budget.hard
            else "It is a soft budget: calls are not blocked.\n"
        )
    )
    recipients = list(budget.notify_emails) or admin_emails(budget.tenant_id)
    if recipients:
        send_mail(subject, text, None, recipients, fail_silently=True)
    _post(budget, threshold, spent)


def admin_emails(tenant_id: int) -> list[str]:
    members = Membership.objects.filter(
        tenant_id=tenant_id, role__in=[Role.OWNER, Role.ADMIN]
    ).select_related("user")
    return sorted({m.user.email for m in members if m.user.email})


def _post(budget: Budget, threshold: int, spent: Decimal) -> None:
    from billing.report_webhooks import post_event
    from gateway.secrets import decrypt

    hook = ReportWebhook.objects.filter(tenant_id=budget.tenant_id, enabled=True).first()
    url = budget.webhook_url or (hook.url if hook else "")
    if not url:
        return
    payload = {
        "tenant": budget.tenant.slug, "budget_id": budget.pk, "scope": budget.scope,
        "period": budget.period, "threshold_percent": threshold, "spent_usd": str(spent),
        "amount_usd": str(budget.amount_usd), "hard": budget.hard,
    }  # fmt: skip
    try:
        post_event(url, decrypt(hook.secret_encrypted) if hook else None, EVENT, payload)
    except Exception as exc:  # noqa: BLE001 - an alert must not break the usage pipeline
        log.warning("budget %s: webhook %s failed: %s", budget.pk, url, exc)

"""Cost anomalies: a tenant's day that cost more than its trailing week's daily average times
the tenant's factor (`Tenant.cost_anomaly_factor`, else settings.COST_ANOMALY_FACTOR).

The rule, run by Celery beat (observability.tasks.flag_cost_anomalies):

- Two days are checked for every tenant with events: the last complete UTC day (yesterday)
  and today so far (a cost only grows, so today can be flagged before it ends).
- The baseline of day D is the cost of the 7 full days before it (D-7 .. D-1) divided by the
  number of those days on which the tenant made calls. Averaging over active days, not 7,
  keeps a tenant that started 4 days ago, or that is quiet at weekends, from looking like a
  spike on its first ordinary day; it is the conservative choice (a higher baseline flags
  less).
- No verdict with too little history: fewer than MIN_HISTORY_DAYS active days in the week, or
  a baseline of 0 (nothing to be a multiple of).
- D is anomalous when cost(D) > baseline x factor.

An anomaly is one `CostAnomaly` row per tenant and day (a unique constraint) and one alert: an
email to the tenant's owners and admins and, when the tenant has an enabled webhook
(billing.ReportWebhook), a POST of the `cost.anomaly` event signed like the cost reports. The
alert is claimed by setting `notified_at` in a conditional UPDATE before it goes out, so two
workers never both send it and a run after it sends nothing (at most once, like the budget
notices). A later run updates the day's cost (today's keeps growing) without alerting again.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.budget_alerts import admin_emails
from billing.models import ReportWebhook
from billing.report_webhooks import post_event
from gateway.secrets import decrypt
from observability.analytics import daily_costs
from observability.models import CostAnomaly
from portal.models import Tenant

log = logging.getLogger(__name__)

EVENT = "cost.anomaly"
WINDOW_DAYS = 7
MIN_HISTORY_DAYS = 3
PLACES = Decimal("0.000001")  # CostAnomaly's decimal places


def factor_of(tenant: Tenant) -> float:
    if tenant.cost_anomaly_factor is not None:
        return tenant.cost_anomaly_factor
    return settings.COST_ANOMALY_FACTOR


def baseline(days: dict[date, dict], day: date) -> Decimal | None:
    """The daily average of the 7 days before `day` over its active days; None when there
    are fewer than MIN_HISTORY_DAYS of them or it is 0."""
    window = [days[d] for d in _days_before(day) if d in days and days[d]["requests"]]
    if len(window) < MIN_HISTORY_DAYS:
        return None
    average = sum((row["cost"] for row in window), Decimal(0)) / len(window)
    return average if average > 0 else None


def flag_and_alert(today: date | None = None) -> int:
    """Flag yesterday and today of every tenant with events; alert each new anomaly once.
    Returns the alerts sent."""
    today = today or timezone.now().astimezone(UTC).date()
    costs = daily_costs(today - timedelta(days=WINDOW_DAYS + 1), today)
    tenants = Tenant.objects.in_bulk(list(costs))
    sent = 0
    for tenant_id, days in costs.items():
        tenant = tenants.get(tenant_id)
        if tenant is None:
            continue
        for day in (today - timedelta(days=1), today):
            anomaly = _flag(tenant, day, days)
            if anomaly is not None and _claim(anomaly):
                _alert(tenant, anomaly)
                sent += 1
    return sent


def _days_before(day: date) -> list[date]:
    return [day - timedelta(days=n) for n in range(1, WINDOW_DAYS + 1)]


def _flag(tenant: Tenant, day: date, days: dict[date, dict]) -> CostAnomaly | None:
    """The day's CostAnomaly (created or updated) when it is one, else None."""
    average = baseline(days, day)
    cost = days.get(day, {}).get("cost", Decimal(0))
    factor = factor_of(tenant)
    if average is None or cost <= average * Decimal(str(factor)):
        return None
    values = {
        "cost": cost.quantize(PLACES),
        "baseline": average.quantize(PLACES),
        "factor": factor,
    }
    try:
        with transaction.atomic():
            anomaly, _ = CostAnomaly.objects.update_or_create(
                tenant=tenant, day=day, defaults=values
            )
    except IntegrityError:  # another run created it between the read and the write
        anomaly = CostAnomaly.objects.get(tenant=tenant, day=day)
    return anomaly


def _claim(anomaly: CostAnomaly) -> bool:
    claimed = CostAnomaly.objects.filter(pk=anomaly.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    return claimed == 1


def _alert(tenant: Tenant, anomaly: CostAnomaly) -> None:
    ratio = anomaly.cost / anomaly.baseline
    subject = f"[Waystation] Unusual spend on {tenant.name}: ${anomaly.cost:.2f} on {anomaly.day}"
    text = (
        f"{tenant.name} spent ${anomaly.cost:.2f} on {anomaly.day:%Y-%m-%d} (UTC), "
        f"{ratio:.1f}x its trailing week's daily average of ${anomaly.baseline:.2f} "
        f"(the alert threshold is {anomaly.factor:g}x).\n"
        "The analytics page shows which models, applications and keys it came from.\n"
    )
    recipients = admin_emails(tenant.pk)
    if recipients:
        send_mail(subject, text, None, recipients, fail_silently=True)
    _post(tenant, anomaly)


def _post(tenant: Tenant, anomaly: CostAnomaly) -> None:
    """The tenant's webhook, signed (a failure is logged: an alert is sent at most once)."""
    hook = ReportWebhook.objects.filter(tenant=tenant, enabled=True).first()
    if hook is None:
        return
    payload = {
        "tenant": tenant.slug, "day": anomaly.day.isoformat(), "cost_usd": str(anomaly.cost),
        "baseline_usd": str(anomaly.baseline), "factor": anomaly.factor,
    }  # fmt: skip
    try:
        post_event(hook.url, decrypt(hook.secret_encrypted), EVENT, payload)
    except Exception as exc:  # noqa: BLE001 - one tenant's webhook must not stop the others
        log.warning(
            "cost anomaly of %s on %s: webhook %s failed: %s", tenant, anomaly.day, hook.url, exc
        )

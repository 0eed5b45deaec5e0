from celery import shared_task
from django.conf import settings

from billing import budget_alerts, usage_stream


# Acknowledged on receipt: the stream's consumer group, not this message, holds what is owed
# (a dead worker's entries are reclaimed), and an unacknowledged message in flight when the
# broker connection drops makes kombu's redis transport crash the worker ("Unrecoverable
# error: 'NoneType' object has no attribute 'hostname'" in restore_unacked).
@shared_task(ignore_result=True, acks_late=False)
def drain_usage_stream() -> int:
    if not settings.DISTRIBUTED:
        return 0  # embedded mode writes in-process
    stored = usage_stream.drain()
    budget_alerts.sweep()
    return stored


@shared_task(ignore_result=True)
def rollup_recent_hours() -> int:
    """Re-roll the current and the previous hour (events arrive late)."""
    from billing import rollups

    return rollups.rollup_recent(rollups.HOUR)


@shared_task(ignore_result=True)
def rollup_recent_days() -> int:
    """Re-roll today and yesterday."""
    from billing import rollups

    return rollups.rollup_recent(rollups.DAY)


@shared_task(ignore_result=True)
def push_monthly_reports() -> int:
    """Last month's cost report to each tenant's chargeback webhook, once each."""
    from billing import report_webhooks

    return report_webhooks.push_monthly_reports()

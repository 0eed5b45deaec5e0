"""The call log's retention: bodies are deleted after their tenant's `log_retention_days`,
never kept longer than the operator's GATEWAY_LOG_MAX_RETENTION_DAYS."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from observability.models import CallBody
from portal.models import Tenant


def retention_days(tenant: Tenant) -> int:
    return max(1, min(tenant.log_retention_days, settings.GATEWAY_LOG_MAX_RETENTION_DAYS))


def purge_call_bodies(now: datetime | None = None) -> int:
    """Delete what has outlived its retention; returns how many bodies went."""
    now = now or timezone.now()
    deleted = 0
    for tenant in Tenant.objects.only("pk", "log_retention_days"):
        cutoff = now - timedelta(days=retention_days(tenant))
        deleted += CallBody.objects.filter(tenant_id=tenant.pk, created_at__lt=cutoff).delete()[0]
    # Bodies of no tenant (a refused key) or of a deleted one: the operator's maximum.
    cap = now - timedelta(days=settings.GATEWAY_LOG_MAX_RETENTION_DAYS)
    deleted += CallBody.objects.filter(created_at__lt=cap).delete()[0]
    return deleted

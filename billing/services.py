"""The usage store: idempotent batch writes keyed by request id."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import close_old_connections, transaction

from billing import budget_alerts
from billing.models import UsageEvent
from observability import bodies as call_bodies
from observability import tail

FIELDS = {f.name for f in UsageEvent._meta.concrete_fields} - {"id"}


log = logging.getLogger(__name__)


def usage_store_batch(*, rows: list[dict[str, Any]]) -> int:
    """Store events; one already stored (same request_id) is skipped. Returns rows sent."""
    close_old_connections()
    events = [UsageEvent(**_clean(row)) for row in rows]
    with transaction.atomic():
        UsageEvent.objects.bulk_create(events, ignore_conflicts=True, batch_size=500)
        call_bodies.store(rows)
    try:
        tail.publish(rows)  # the portal's live tail
    except Exception:  # nor may the tail
        log.exception("live tail publish failed")
    try:
        budget_alerts.note(e.tenant_id for e in events)
    except Exception:  # an alert failing must never hold back the usage pipeline
        log.exception("budget alerts failed")
    return len(events)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in row.items() if k in FIELDS}
    if data.get("cost") is not None:
        data["cost"] = Decimal(data["cost"])
    return data

"""Budget thresholds notify once each, by email and by a signed webhook."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing import budget_alerts, controls
from billing.models import BudgetNotice
from billing.report_webhooks import report_webhook_set, verify
from billing.services import usage_store_batch
from portal import services
from portal.models import Membership, Role
from portal.services.common import SYSTEM

pytestmark = pytest.mark.django_db(transaction=True)


def spend(tenant, amount: str) -> None:
    usage_store_batch(
        rows=[
            {
                "request_id": str(uuid.uuid4()),
                "created_at": datetime.now(UTC).isoformat(),
                "tenant_id": tenant.pk,
                "route": "chat",
                "public_model": "m",
                "cost": amount,
                "latency_ms": 1.0,
                "status": 200,
            }
        ]
    )


@pytest.fixture(autouse=True)
def every_batch(settings):
    """Evaluate budgets on every batch (in production at most every few seconds)."""
    settings.BUDGET_ALERT_INTERVAL_SECONDS = 0
    budget_alerts._pending.clear()
    budget_alerts._checked_at.clear()


@pytest.fixture
def tenant():
    tenant = services.tenant_get_or_create(slug="acme")
    owner = get_user_model().objects.create_user("own", "owner@acme.test", "pw")
    viewer = get_user_model().objects.create_user("view", "viewer@acme.test", "pw")
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    Membership.objects.create(user=viewer, tenant=tenant, role=Role.VIEWER)
    return tenant


def test_each_threshold_emails_the_owners_once(tenant):
    controls.budget_set(actor=SYSTEM, tenant=tenant, amount_usd=Decimal("1"))

    spend(tenant, "0.3")
    assert mail.outbox == []
    spend(tenant, "0.3")  # 60 %
    spend(tenant, "0.25")  # 85 %
    spend(tenant, "0.01")  # still 86 %: nothing new

    subjects = [m.subject for m in mail.outbox]
    assert len(subjects) == 2
    assert "50%" in subjects[0] and "80%" in subjects[1]
    assert mail.outbox[1].to == ["owner@acme.test"]  # owners and admins, not viewers
    assert "$0.85 of $1.00" in mail.outbox[1].body
    assert BudgetNotice.objects.count() == 2


def test_the_tenant_webhook_gets_a_signed_alert(tenant):
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((body, self.headers["x-waystation-signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, secret = report_webhook_set(
            actor=SYSTEM, tenant=tenant, url=f"http://127.0.0.1:{server.server_port}/hook"
        )
        controls.budget_set(
            actor=SYSTEM,
            tenant=tenant,
            amount_usd=Decimal("2"),
            thresholds=[80],
            notify_emails=["finance@acme.test"],
        )
        spend(tenant, "1.7")
    finally:
        server.shutdown()

    [(body, header)] = received
    assert verify(secret, body, header)
    assert b'"threshold_percent":80' in body and b'"event":"budget.threshold"' in body
    assert mail.outbox[0].to == ["finance@acme.test"]


def test_a_crossing_between_evaluations_is_sent_by_the_next_sweep(tenant, settings):
    settings.BUDGET_ALERT_INTERVAL_SECONDS = 0.3
    controls.budget_set(actor=SYSTEM, tenant=tenant, amount_usd=Decimal("1"), thresholds=[50])

    spend(tenant, "0.1")  # evaluated at once: nothing crossed
    spend(tenant, "0.5")  # crosses 50 %, but the tenant was evaluated a moment ago
    assert mail.outbox == []
    assert budget_alerts.sweep() == 0  # not due yet

    time.sleep(0.35)
    assert budget_alerts.sweep() == 1
    assert "50%" in mail.outbox[0].subject

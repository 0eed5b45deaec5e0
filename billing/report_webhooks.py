"""Monthly cost reports pushed to a tenant's chargeback webhook.

A tenant has at most one `ReportWebhook` (URL + secret), set by its owners and admins (the
`budget.manage` action) through `report_webhook_set`, audited. Early on the 1st of each month
Celery beat runs `push_monthly_reports`, which POSTs the previous month's report (the JSON of
the REST API) to every enabled webhook that has not received that month yet, so a failed
delivery is tried again on the next run and a delivered one is not sent twice.

Each delivery is signed like Stripe's:

    X-Waystation-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the raw body with its copy of the secret, compares in
constant time and rejects old timestamps (`verify` does all three). The secret is shown once
when created or rotated and stored Fernet-encrypted, like provider keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils import timezone

from billing.models import ReportWebhook
from billing.reports import month_label, monthly_report, previous_month
from gateway import outbound
from gateway.secrets import decrypt, encrypt
from portal.models import Tenant
from portal.services.common import Actor, ServiceError, _check, audit

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Waystation-Signature"
EVENT = "cost_report.monthly"
SECRET_PREFIX = "wswhsec_"
TIMEOUT_SECONDS = 10.0
TOLERANCE_SECONDS = 300


# --- signing -----------------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def post_event(url: str, secret: str | None, event: str, payload: dict) -> None:
    """POST one alert event as compact JSON, signed when there is a secret. Raises what
    urllib raises, or OutboundRefused when the policy forbids the address (redirects are not
    followed); callers decide whether a failure matters."""
    body = json.dumps({"event": event, **payload}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Waystation-Event": event}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body, int(time.time()))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    outbound.urlopen(request, timeout=TIMEOUT_SECONDS).close()


def verify(
    secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE_SECONDS, now=None
) -> bool:
    """What a receiver does: a `v1` matching the body, at a timestamp within `tolerance`."""
    parts = [item.split("=", 1) for item in (header or "").split(",") if "=" in item]
    try:
        timestamp = int(next(value for name, value in parts if name == "t"))
    except (StopIteration, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, value) for name, value in parts if name == "v1")


def report_body(report) -> bytes:
    return json.dumps(report.as_dict(), separators=(",", ":"), sort_keys=True).encode()


# --- settings (services: checked and audited) --------------------------------------------


def check_webhook_url(url: str) -> None:
    """ServiceError unless the outbound policy lets the server call `url` (gateway.outbound);
    checked again on every delivery, on the address connected to."""
    try:
        outbound.check_url(url)
    except outbound.OutboundRefused as exc:
        raise ServiceError(f"The webhook URL is not allowed: {exc}") from None


def report_webhook_set(
    *, actor: Actor, tenant: Tenant, url: str, enabled: bool = True, rotate_secret: bool = False
) -> tuple[ReportWebhook, str | None]:
    """Create or change the tenant's webhook. Returns it and, when a secret was made (new
    webhook, or `rotate_secret`), that secret: it is shown this once."""
    _check(actor, tenant, "budget.manage")
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ServiceError("The webhook URL must be an http:// or https:// URL.") from None
    check_webhook_url(url)
    webhook = ReportWebhook.objects.filter(tenant=tenant).first()
    secret = None
    if webhook is None or rotate_secret:
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    if webhook is None:
        webhook = ReportWebhook(tenant=tenant)
        action = "report_webhook.created"
    else:
        action = "report_webhook.changed"
    webhook.url, webhook.enabled = url, enabled
    if secret:
        webhook.secret_encrypted = encrypt(secret)
    webhook.save()
    audit(
        actor=actor,
        tenant=tenant,
        action=action,
        target=webhook,
        url=url,
        enabled=enabled,
        secret_rotated=bool(secret) and action.endswith("changed"),
    )
    return webhook, secret


def report_webhook_delete(*, actor: Actor, webhook: ReportWebhook) -> None:
    _check(actor, webhook.tenant, "budget.manage")
    audit(actor=actor, tenant=webhook.tenant, action="report_webhook.deleted", target=webhook)
    webhook.delete()


# --- delivery ----------------------------------------------------------------------------


def push_report(webhook: ReportWebhook, year: int, month: int) -> int:
    """POST one month's report; returns the HTTP status. Raises on network errors and
    non-2xx answers; the outcome is recorded on the webhook either way."""
    label = month_label(year, month)
    body = report_body(monthly_report(webhook.tenant, year, month))
    secret = decrypt(webhook.secret_encrypted)
    if secret is None:
        raise ServiceError("The webhook secret can't be decrypted (was the key changed?).")
    request = urllib.request.Request(  # noqa: S310 - the URL is validated to http(s)
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Waystation-Webhooks/1",
            "X-Waystation-Event": EVENT,
            "X-Waystation-Delivery": f"{webhook.tenant.slug}:{label}",
            SIGNATURE_HEADER: signature(secret, body, int(time.time())),
        },
    )
    status, error = None, ""
    try:
        with outbound.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code}"
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
        raise
    finally:
        delivered = status is not None and 200 <= status < 300
        webhook.last_attempt_at = timezone.now()
        webhook.last_status, webhook.last_error = status, "" if delivered else error
        if delivered:
            webhook.last_pushed_month = label
        webhook.save(
            update_fields=[
                "last_attempt_at",
                "last_status",
                "last_error",
                "last_pushed_month",
                "updated_at",
            ]
        )
    return status


def push_monthly_reports(year: int | None = None, month: int | None = None, now=None) -> int:
    """The previous month's report (or the given month's) to each enabled webhook that has
    not received it; returns how many were delivered."""
    if year is None or month is None:
        moment: datetime = (now or timezone.now()).astimezone(UTC)
        year, month = previous_month(moment.year, moment.month)
    label = month_label(year, month)
    delivered = 0
    pending = ReportWebhook.objects.filter(enabled=True).exclude(last_pushed_month=label)
    for webhook in pending.select_related("tenant"):
        try:
            push_report(webhook, year, month)
        except Exception:
            log.warning("cost report %s to %s failed", label, webhook.url, exc_info=True)
        else:
            delivered += 1
    return delivered

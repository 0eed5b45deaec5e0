"""The call log explorer: which calls a user may see, the filters on them, one call's bodies
and timeline, and the CSV / JSON Lines export.

`calls_visible_to` and `access_call_by_request_id` are the only doors to usage events here:
a tenant's members see its calls, the operator (staff) sees every tenant's.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import connection, transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import Http404
from django.utils import timezone

from billing.models import UsageEvent
from observability import bodies as body_codec
from observability import retention
from observability.models import CallBody
from portal import access
from portal.models import ApiKey, Application, Membership, Tenant
from portal.services.common import Actor, ServiceError, _check, audit

VIEW = "usage.view"  # reading the call log is reading usage
MANAGE = "guardrail.manage"  # what is kept of the calls: owners and admins, as guardrails

LAST = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
STATUS = re.compile(r"^(?:[1-5]\d\d|[1-5]xx|errors)$")
CACHE_RESULTS = [
    ("hit", "Hit"),
    ("semantic-hit", "Semantic hit"),
    ("miss", "Miss"),
    ("bypass", "Bypass"),
    ("none", "Not consulted"),
]
# The filters the explorer shows first; the others are behind "More filters".
PRIMARY_FILTERS = ("last", "from", "to", "tenant", "application", "key", "model", "status")
GUARDRAIL_ACTIONS = [("blocked", "Blocked"), ("flagged", "Flagged"), ("redacted", "Redacted")]
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


# --- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFilters:
    """What the explorer, the export and the API filter on; empty means "any"."""

    start: datetime | None = None
    end: datetime | None = None
    last: str = ""  # "1h", "24h" or "7d" before now
    tenant: str = ""  # a slug; the caller resolves it through access
    application: int | None = None
    key: int | None = None
    model: str = ""  # the public, served or upstream model
    provider: str = ""
    status: str = ""  # "429", "4xx" or "errors" (400 and above)
    latency_min: float | None = None
    latency_max: float | None = None
    cost_min: Decimal | None = None
    cost_max: Decimal | None = None
    cache: str = ""  # a cache result, or "none" when the cache wasn't consulted
    guardrail: str = ""  # blocked, flagged or redacted
    end_user: str = ""
    tag: str = ""  # the call's tags contain it
    route: str = ""
    request_id: str = ""
    session_id: str = ""
    trace_id: str = ""


def _when(label: str, help_text: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        help_text=help_text,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


def _text(label: str, help_text: str = "", max_length: int = 256) -> forms.CharField:
    return forms.CharField(label=label, required=False, max_length=max_length, help_text=help_text)


def _number(label: str, kind=forms.FloatField, **kwargs) -> forms.Field:
    widget = forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"})
    return kind(label=label, required=False, min_value=0, widget=widget, **kwargs)


class CallFilterForm(forms.Form):
    """GET parameters -> CallFilters. With a tenant, application and key are that tenant's
    choices and there is no tenant parameter."""

    last = forms.ChoiceField(
        label="Last",
        required=False,
        choices=[("", "Any time"), ("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days")],
    )
    to = _when("To", "UTC, inclusive.")
    tenant = forms.SlugField(label="Tenant", required=False, help_text="A tenant's slug.")
    application = forms.IntegerField(label="Application", required=False, min_value=1)
    key = forms.IntegerField(label="API key", required=False, min_value=1)
    model = _text("Model", "Public, served or upstream model.", 200)
    provider = _text("Provider", max_length=200)
    status = _text("Status", "A status (429), a class (4xx) or “errors”.", 6)
    latency_min = _number("Latency from (ms)")
    latency_max = _number("Latency to (ms)")
    cost_min = _number("Cost from (USD)", forms.DecimalField, max_digits=18, decimal_places=10)
    cost_max = _number("Cost to (USD)", forms.DecimalField, max_digits=18, decimal_places=10)
    cache = forms.ChoiceField(label="Cache", required=False, choices=[("", "Any")] + CACHE_RESULTS)
    guardrail = forms.ChoiceField(
        label="Guardrails", required=False, choices=[("", "Any")] + GUARDRAIL_ACTIONS
    )
    end_user = _text("End user")
    tag = _text("Tag", "The call's tags contain it.", 64)
    route = _text("Route", max_length=64)
    request_id = _text("Request id", max_length=128)
    session_id = _text("Session id")
    trace_id = _text("Trace id")

    def __init__(self, *args, tenant: Tenant | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if tenant is None:
            return
        del self.fields["tenant"]
        apps = Application.objects.filter(tenant=tenant).order_by("name")
        keys = ApiKey.objects.filter(tenant=tenant).order_by("name")
        self.fields["application"] = _pick("Application", [(a.pk, a.name) for a in apps])
        self.fields["key"] = _pick("API key", [(k.pk, f"{k.name} ({k.prefix}…)") for k in keys])

    def clean_status(self) -> str:
        value = self.cleaned_data["status"].strip().lower()
        if value and not STATUS.match(value):
            raise forms.ValidationError("A status such as 429, a class such as 4xx, or errors.")
        return value

    def clean(self):
        data = super().clean()
        for low, high in (("from", "to"), ("latency_min", "latency_max"), ("cost_min", "cost_max")):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(high, "Must not be before the lower bound.")
        return data

    def filters(self) -> CallFilters:
        """The valid form's filters."""
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        data["start"], data["end"] = data.pop("from", None), data.pop("to", None)
        return CallFilters(**{f.name: data[f.name] for f in fields(CallFilters) if f.name in data})


# "from" is a keyword: the field is added by name, after "last".
CallFilterForm.base_fields = {
    "last": CallFilterForm.base_fields.pop("last"),
    "from": _when("From", "UTC."),
    **CallFilterForm.base_fields,
}


def _pick(label: str, choices: list) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label, required=False, coerce=int, empty_value=None, choices=[("", "Any")] + choices
    )


EXACT = {
    "application": "application_id",
    "key": "api_key_id",
    "provider": "provider",
    "end_user": "end_user",
    "route": "route",
    "request_id": "request_id",
    "session_id": "session_id",
    "trace_id": "trace_id",
}
BOUNDS = {
    "start": "created_at__gte",
    "end": "created_at__lte",
    "latency_min": "latency_ms__gte",
    "latency_max": "latency_ms__lte",
    "cost_min": "cost__gte",
    "cost_max": "cost__lte",
}


def filter_calls(
    queryset: QuerySet[UsageEvent], filters: CallFilters, *, now: datetime | None = None
) -> QuerySet[UsageEvent]:
    """`queryset` (already scoped to what the user may see) narrowed by `filters`; the tenant
    filter is the caller's (see calls_visible_to)."""
    lookups = {
        column: getattr(filters, name)
        for name, column in {**EXACT, **BOUNDS}.items()
        if getattr(filters, name) not in (None, "")
    }
    queryset = queryset.filter(**lookups)
    if filters.last:
        queryset = queryset.filter(created_at__gte=(now or timezone.now()) - LAST[filters.last])
    if filters.model:
        m = filters.model
        queryset = queryset.filter(Q(public_model=m) | Q(served_model=m) | Q(upstream_model=m))
    if filters.status:
        queryset = queryset.filter(_status(filters.status))
    if filters.cache:
        queryset = queryset.filter(cache="" if filters.cache == "none" else filters.cache)
    if filters.guardrail:
        # Report keys (gateway/guardrails/service.py): "blocked" names the check, "flagged"
        # and "redacted" count what was found. has_key works on PostgreSQL and SQLite.
        queryset = queryset.filter(guardrails__has_key=filters.guardrail)
    if filters.tag:
        queryset = _with_tag(queryset, filters.tag)
    return queryset


def _status(value: str) -> Q:
    if value == "errors":
        return Q(status__gte=400)
    if value.endswith("xx"):
        low = int(value[0]) * 100
        return Q(status__gte=low, status__lt=low + 100)
    return Q(status=int(value))


def _with_tag(queryset: QuerySet[UsageEvent], tag: str) -> QuerySet[UsageEvent]:
    if connection.features.supports_json_field_contains:  # PostgreSQL: jsonb @> '["tag"]'
        return queryset.filter(tags__contains=[tag])
    # SQLite stores the list as JSON text: the tag as a JSON string, quotes included, matches
    # one whole element (LIKE there ignores ASCII case).
    encoded = json.dumps(tag)  # as Django writes JSON: ensure_ascii
    return queryset.alias(tags_text=Cast("tags", TextField())).filter(tags_text__contains=encoded)


# --- the doors --------------------------------------------------------------------------


def calls_visible_to(*, user, tenant: Tenant | None = None) -> QuerySet[UsageEvent]:
    """Newest first: `tenant`'s calls (403 without the role), else those of every tenant where
    the user may view usage; the operator's: every tenant's."""
    events = UsageEvent.objects.order_by("-created_at", "-pk")
    if tenant is not None:
        access.require(user, tenant, VIEW)
        return events.filter(tenant_id=tenant.pk)
    if user.is_staff:
        return events
    viewable = Membership.objects.filter(user=user, role__in=access.MATRIX[VIEW])
    return events.filter(tenant_id__in=viewable.values("tenant_id"))


def access_call_by_request_id(user, request_id: str, *, tenant: Tenant | None = None):
    """One visible call; 404 for another tenant's, so request ids reveal nothing."""
    event = calls_visible_to(user=user, tenant=tenant).filter(request_id=request_id).first()
    if event is None:
        raise Http404("No such call.")
    return event


# --- one call ---------------------------------------------------------------------------


def guardrail_action(report: dict) -> str:
    """ "blocked", else "flagged" and/or "redacted", else ""."""
    if not isinstance(report, dict):
        return ""
    if report.get("blocked"):
        return "blocked"
    return ", ".join(a for a, _ in GUARDRAIL_ACTIONS[1:] if report.get(a))


def retention_days(tenant: Tenant | None) -> int:
    """How long bodies are kept (observability.retention purges them); a call of no tenant:
    the operator's maximum."""
    if tenant is None:
        return settings.GATEWAY_LOG_MAX_RETENTION_DAYS
    return retention.retention_days(tenant)


@dataclass(frozen=True)
class Bodies:
    request: Any = None
    response: Any = None
    size: int = 0
    truncated: bool = False
    missing: str = ""  # why there are none: "operator", "tenant", "product", "expired", ...


def bodies_of(event: UsageEvent, tenant: Tenant | None, *, now: datetime | None = None) -> Bodies:
    body = CallBody.objects.filter(request_id=event.request_id, tenant_id=event.tenant_id).first()
    if body is not None:
        try:
            data = body_codec.decode(body.data)
        except (zlib.error, orjson.JSONDecodeError):
            return Bodies(missing="unreadable")
        return Bodies(data.get("request"), data.get("response"), body.size, body.truncated)
    return Bodies(missing=_why_no_bodies(event, tenant, now or timezone.now()))


def _why_no_bodies(event: UsageEvent, tenant: Tenant | None, now: datetime) -> str:
    """The settings as they are now: they may have changed since the call."""
    if event.created_at < now - timedelta(days=retention_days(tenant)):
        return "expired"
    if not settings.GATEWAY_LOG_BODIES:
        return "operator"
    if tenant is not None and not tenant.log_bodies:
        return "tenant"
    key = ApiKey.objects.filter(pk=event.api_key_id).first() if event.api_key_id else None
    if key is not None:
        from portal.selectors import models_without_bodies

        if event.public_model in models_without_bodies(key=key):
            return "product"
    return "unknown"


# --- rows of a list ----------------------------------------------------------------------


def labelled(events) -> list[UsageEvent]:
    """`events` with `application_name`, `key_prefix` and `guardrail_action` set (two
    queries for the lot)."""
    events = list(events)
    apps = dict(
        Application.objects.filter(pk__in={e.application_id for e in events}).values_list(
            "pk", "name"
        )
    )
    keys = dict(
        ApiKey.objects.filter(pk__in={e.api_key_id for e in events}).values_list("pk", "prefix")
    )
    for event in events:
        event.application_name = apps.get(event.application_id, "")
        event.key_prefix = keys.get(event.api_key_id, "")
        event.guardrail_action = guardrail_action(event.guardrails)
    return events


# --- export ------------------------------------------------------------------------------

EXPORT_MAX_ROWS = 100_000
CHUNK = 500
CSV_COLUMNS = (
    "request_id created_at tenant_id application_id api_key_id route public_model served_model "
    "routing provider upstream_model stream status error_type latency_ms ttft_ms input_tokens "
    "output_tokens cached_input_tokens reasoning_tokens cost cache cache_saved guardrail_action "
    "end_user session_id trace_id tags"
).split()
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """csv.writer's file: hands each row back instead of writing it."""

    def write(self, value: str) -> str:
        return value


def export_rows(queryset: QuerySet[UsageEvent], fmt: str) -> Iterator[str]:
    """The lines of a "csv" (a header first) or "jsonl" (bodies included) export."""
    return _csv(queryset) if fmt == "csv" else _jsonl(queryset)


def _chunks(queryset: QuerySet[UsageEvent]) -> Iterator[list[UsageEvent]]:
    chunk: list[UsageEvent] = []
    for event in queryset[:EXPORT_MAX_ROWS].iterator(chunk_size=CHUNK):
        chunk.append(event)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv(queryset: QuerySet[UsageEvent]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    for chunk in _chunks(queryset):
        for event in chunk:
            row = event_dict(event)
            row["tags"] = ";".join(str(t) for t in row["tags"])
            yield writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula is quoted (client-supplied metadata)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _jsonl(queryset: QuerySet[UsageEvent]) -> Iterator[str]:
    for chunk in _chunks(queryset):
        stored = CallBody.objects.filter(request_id__in=[e.request_id for e in chunk])
        kept = {(b.request_id, b.tenant_id): b for b in stored}
        for event in chunk:
            row = event_dict(event)
            body = kept.get((event.request_id, event.tenant_id))
            row["bodies"] = _decoded(body)
            row["bodies_truncated"] = bool(body and body.truncated)
            yield orjson.dumps(row, default=str).decode() + "\n"


def _decoded(body: CallBody | None) -> dict | None:
    if body is None:
        return None
    try:
        return body_codec.decode(body.data)
    except (zlib.error, orjson.JSONDecodeError):
        return None


def event_dict(event: UsageEvent) -> dict[str, Any]:
    row = {f.attname: getattr(event, f.attname) for f in UsageEvent._meta.concrete_fields}
    row.pop("id")
    row["guardrail_action"] = guardrail_action(event.guardrails)
    return row


# --- settings ----------------------------------------------------------------------------


class CallLogSettingsForm(forms.Form):
    log_bodies = forms.BooleanField(
        label="Keep request and response bodies", required=False, initial=True
    )
    log_retention_days = forms.IntegerField(label="Keep them for (days)", min_value=1)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cap = settings.GATEWAY_LOG_MAX_RETENTION_DAYS
        field = self.fields["log_retention_days"]
        field.max_value = cap
        field.validators.append(MaxValueValidator(cap))
        field.widget.attrs["max"] = cap
        field.help_text = f"From 1 to {cap} days (the operator's limit)."


@transaction.atomic
def call_log_settings_update(
    *, actor: Actor, tenant: Tenant, log_bodies: bool, log_retention_days: int
) -> Tenant:
    _check(actor, tenant, MANAGE)
    cap = settings.GATEWAY_LOG_MAX_RETENTION_DAYS
    if not 1 <= log_retention_days <= cap:
        raise ServiceError(f"Keep bodies from 1 to {cap} days.")
    tenant.log_bodies, tenant.log_retention_days = log_bodies, log_retention_days
    tenant.save(update_fields=["log_bodies", "log_retention_days"])
    audit(
        actor=actor,
        tenant=tenant,
        action="call_log.settings_changed",
        target=tenant,
        log_bodies=log_bodies,
        log_retention_days=log_retention_days,
    )
    return tenant

"""The live tail: stored usage rows, slimmed, fanned out to the portal's watchers.

`publish(rows)` runs right after the usage store wrote a batch (billing.services): in the
gateway's writer thread in embedded mode, in the Celery drain task in distributed mode. Each
tenant's rows go to the channel-layer group `tail.<tenant_id>`, and all rows to `tail.all`
(an operator's view), as one message per group: {"type": "tail.calls", "calls": [...]}.

Nobody watching is the usual case, so a publish first asks the cache (one MGET) which groups
have a watcher: a connected TailConsumer keeps `waystation:tail:watch:<group>` alive with a
short TTL. A group nobody marked costs nothing more. The cache is Redis in distributed mode
and process-local in embedded mode, where the publisher shares the process with the
consumers, so the check holds in both.

The in-memory channel layer (embedded mode) is a set of asyncio queues of the server's event
loop, which another thread may not touch; its sends are handed to that loop, which the
consumers register (`register_loop`). channels_redis is safe from any thread.

A call's bodies are never part of the tail, only the fields the page shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import cache

log = logging.getLogger(__name__)

ALL = "all"  # the operator's group: every tenant's calls
WATCH_TTL = 60  # seconds a watcher's mark lives; consumers refresh it every WATCH_TTL / 3
MAX_CALLS = 200  # per message: the page keeps no more rows than that
TEXT_MAX = 256  # filter values; the gateway caps metadata at 256 characters too

# What a row of the tail shows; anything else of the event (bodies, attempts, prompts,
# timings, session and trace ids) stays out.
FIELDS = (
    "request_id",
    "created_at",
    "tenant_id",
    "api_key_id",
    "application_id",
    "route",
    "public_model",
    "served_model",
    "provider",
    "stream",
    "status",
    "error_type",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "cache",
    "end_user",
    "tags",
)


def group_name(tenant_id: int | str) -> str:
    return f"tail.{tenant_id}"


def watch_key(tenant_id: int | str) -> str:
    return f"waystation:tail:watch:{tenant_id}"


# --- rows ----------------------------------------------------------------------------


def slim(row: Mapping[str, Any]) -> dict[str, Any]:
    """The tail's view of a usage row: plain JSON (msgpack-safe) values, no bodies."""
    call = {name: row.get(name) for name in FIELDS}
    for name in ("created_at", "cost"):
        if call[name] is not None:
            call[name] = str(call[name])
    for name in ("latency_ms", "ttft_ms"):
        if call[name] is not None:
            call[name] = round(float(call[name]), 1)
    call["tags"] = [str(tag) for tag in (call["tags"] or [])]
    call["guardrail"] = guardrail_flag(row.get("guardrails"))
    return call


def guardrail_flag(report: Any) -> str:
    """ "blocked", "flagged", "redacted" or "": the strongest outcome, never what matched."""
    if not isinstance(report, Mapping):
        return ""
    for outcome in ("blocked", "flagged", "redacted"):
        if report.get(outcome):
            return outcome
    return ""


# --- filters -------------------------------------------------------------------------

STATUS_CLASSES = ("", "errors", "ok", "2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True, slots=True)
class Filters:
    """What a watcher wants to see; empty fields match everything."""

    model: str = ""  # part of the model asked for or served, any case
    status: str = ""  # one of STATUS_CLASSES, or an exact code such as "429"
    route: str = ""  # part of the route, any case
    application_id: int | None = None
    key_id: int | None = None
    min_latency_ms: float | None = None
    user: str = ""  # part of the end user, any case
    tag: str = ""  # one of the call's tags, exactly


def parse_filters(data: Mapping[str, Any]) -> Filters:
    """A client's filters message; values that make no sense are left out (match all)."""
    status = _text(data.get("status")).lower()
    if status not in STATUS_CLASSES and not (status.isdigit() and len(status) == 3):
        status = ""
    latency = _number(data.get("min_latency_ms"))
    return Filters(
        model=_text(data.get("model")),
        status=status,
        route=_text(data.get("route")),
        application_id=_id(data.get("application_id")),
        key_id=_id(data.get("key_id")),
        min_latency_ms=latency if latency is not None and latency > 0 else None,
        user=_text(data.get("user")),
        tag=_text(data.get("tag")),
    )


def matches(call: Mapping[str, Any], filters: Filters) -> bool:
    """Does a slimmed call pass the filters? Pure: the consumer's only decision."""
    f = filters
    if f.model and not _contains(
        f"{call.get('public_model') or ''} {call.get('served_model') or ''}", f.model
    ):
        return False
    if f.status and not status_matches(call.get("status"), f.status):
        return False
    if f.route and not _contains(call.get("route"), f.route):
        return False
    if f.application_id is not None and call.get("application_id") != f.application_id:
        return False
    if f.key_id is not None and call.get("api_key_id") != f.key_id:
        return False
    if f.min_latency_ms is not None and (call.get("latency_ms") or 0) < f.min_latency_ms:
        return False
    if f.user and not _contains(call.get("end_user"), f.user):
        return False
    return not f.tag or f.tag in (call.get("tags") or ())


def status_matches(status: Any, wanted: str) -> bool:
    if not isinstance(status, int):
        return False
    if wanted == "errors":
        return status >= 400
    if wanted == "ok":
        return status < 400
    if wanted.endswith("xx"):
        return str(status // 100) == wanted[0]
    return str(status) == wanted


def _contains(value: Any, part: str) -> bool:
    return part.casefold() in str(value or "").casefold()


def _text(value: Any) -> str:
    return value.strip()[:TEXT_MAX] if isinstance(value, str) else ""


def _id(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number != float("inf") else None  # no NaN, inf


# --- watchers ------------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop the consumers run on: where the in-memory layer's sends must happen."""
    global _loop
    _loop = loop


async def mark_watched(tenant_id: int | str) -> None:
    """A consumer says someone watches this group, for WATCH_TTL seconds."""
    await cache.aset(watch_key(tenant_id), 1, timeout=WATCH_TTL)


def watched(groups: Iterable[int | str]) -> set[str]:
    """Which of these tenant ids (or ALL) have a watcher, as strings."""
    keys = {watch_key(g): str(g) for g in groups}
    return {keys[key] for key in cache.get_many(list(keys))}


# --- publishing ----------------------------------------------------------------------


def publish(rows: Iterable[Mapping[str, Any]]) -> None:
    """Send stored rows to the watchers of their tenant and the operator's. Never raises."""
    try:
        messages = _messages(rows)
        if messages:
            _deliver(messages)
    except Exception as exc:  # the usage pipeline must not feel the tail
        log.warning("live tail: publish failed: %r", exc)


def _messages(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{group: message} for the groups with a watcher; {} when nobody watches."""
    rows = list(rows)
    if not rows:
        return {}
    by_tenant: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("tenant_id") is not None:
            by_tenant[str(row["tenant_id"])].append(row)
    live = watched([*by_tenant, ALL])
    if not live:
        return {}
    selected = {t: by_tenant[t] for t in live if t != ALL}
    if ALL in live:
        selected[ALL] = rows
    return {
        group_name(t): {"type": "tail.calls", "calls": [slim(r) for r in chosen[-MAX_CALLS:]]}
        for t, chosen in selected.items()
    }


def _deliver(messages: dict[str, dict[str, Any]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        loop = _loop
        if loop is None or loop.is_closed():
            return  # no consumer ever ran in this process
        future = asyncio.run_coroutine_threadsafe(_send(layer, messages), loop)
        future.add_done_callback(_log_failure)
    else:
        async_to_sync(_send)(layer, messages)


async def _send(layer: Any, messages: dict[str, dict[str, Any]]) -> None:
    for group, message in messages.items():
        await layer.group_send(group, message)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("live tail: send failed: %r", future.exception())

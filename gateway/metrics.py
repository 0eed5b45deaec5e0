"""Prometheus metrics: counted per request at emit, live state read at scrape.

`observe(record)` runs once per request (from gateway.usage.emit) and only updates counters and
histograms in memory. `scrape()` renders the exposition for GET /metrics, adding what is read at
scrape time: breaker states and, in distributed mode, the usage stream's backlog.

Two ways to run several processes:
- PROMETHEUS_MULTIPROC_DIR set (before the process starts): prometheus_client keeps every
  process's values in mmap files there, and any process's /metrics adds them all up
  (MultiProcessCollector). The directory must be emptied before the processes start.
- unset: each process has its own registry and is scraped on its own.

Labels stay bounded: no tenant, key or user; a model the catalog doesn't know is "other" (a
caller could send any name); statuses are classes ("2xx", "4xx", "5xx") except 429.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

PREFIX = "waystation_"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
# The codes the gateway's own limits answer with (gateway/limits.py), not an upstream's 429.
LIMIT_CODES = frozenset({"rate_limit_exceeded", "budget_exceeded", "request_too_large"})
BREAKER_STATES = ("closed", "half-open", "open", "drained")

REQUESTS = Counter(
    PREFIX + "requests",
    "Client requests, by the deployment that answered (else the last tried) and status class.",
    ["route", "model", "provider", "deployment", "status"],
)
ERRORS = Counter(
    PREFIX + "request_errors",
    "Client requests that failed, by error type.",
    ["route", "model", "provider", "error_type"],
)
LATENCY = Histogram(
    PREFIX + "request_duration_seconds",
    "Time from the request's arrival to its usage event (a stream: its end).",
    ["route", "model", "provider"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    PREFIX + "time_to_first_token_seconds",
    "Time from the request's arrival to the first streamed token.",
    ["route", "model", "provider"],
    buckets=TTFT_BUCKETS,
)
TOKENS = Counter(PREFIX + "tokens", "Tokens billed, input or output.", ["model", "direction"])
COST = Counter(PREFIX + "cost_usd", "Cost charged to callers, in USD.", ["model"])
CACHE = Counter(
    PREFIX + "cache_results",
    "Response cache outcomes: hit, semantic-hit, miss, bypass.",
    ["model", "result"],
)
GUARDRAILS = Counter(
    PREFIX + "guardrail_actions",
    "Requests on which a guardrail check blocked, flagged or redacted (once per check kind).",
    ["model", "action", "check"],
)
LIMITS = Counter(
    PREFIX + "limit_rejections",
    "Requests refused by the gateway's rate limits or budgets, by error code.",
    ["model", "reason"],
)
ATTEMPTS = Counter(
    PREFIX + "upstream_attempts",
    "Upstream attempts (retries and fallbacks included), by outcome: ok or the error kind.",
    ["provider", "deployment", "outcome"],
)

# Read at scrape time, never written to multiprocess files (see _live).
BREAKER_STATE = PREFIX + "breaker_state"
BREAKER_FAILURES = PREFIX + "breaker_recent_failures"
STREAM_LENGTH = PREFIX + "usage_stream_length"
STREAM_PENDING = PREFIX + "usage_stream_pending"
LIVE_GAUGES = (BREAKER_STATE, BREAKER_FAILURES, STREAM_LENGTH, STREAM_PENDING)


# --- the hot path ---------------------------------------------------------------------


def observe(record: Any) -> None:  # a gateway.usage.UsageRecord
    """Count one finished request: a dozen in-memory updates, no I/O."""
    try:
        _observe(record)
    except Exception:  # a metric must never fail a request
        log.exception("metrics: could not observe request %s", record.request_id)


def _observe(record: Any) -> None:
    model = _model(record)
    served = _served(record.attempts)
    provider = record.provider or (served or {}).get("provider", "")
    deployment = _deployment(served) or provider
    route = record.route
    REQUESTS.labels(route, model, provider, deployment, status_label(record.status)).inc()
    if record.status >= 400 or record.error_type:  # or a stream that broke after its 200
        ERRORS.labels(route, model, provider, record.error_type or "unknown").inc()
    LATENCY.labels(route, model, provider).observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        TTFT.labels(route, model, provider).observe(record.ttft_ms / 1000)
    if record.input_tokens:
        TOKENS.labels(model, "input").inc(record.input_tokens)
    if record.output_tokens:
        TOKENS.labels(model, "output").inc(record.output_tokens)
    if record.cost:
        COST.labels(model).inc(float(record.cost))
    if record.cache:
        CACHE.labels(model, record.cache).inc()
    if record.guardrails:
        for action, check in guardrail_actions(record.guardrails):
            GUARDRAILS.labels(model, action, check).inc()
    if record.error_type == "rate_limit" and record.error_code in LIMIT_CODES:
        LIMITS.labels(model, record.error_code).inc()
    for attempt in record.attempts:
        name = _deployment(attempt)
        ATTEMPTS.labels(attempt.get("provider", ""), name, attempt.get("outcome", "")).inc()


def status_label(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


def _model(record: Any) -> str:
    """The public model, if it is one: a name that was routed, or one the catalog knows."""
    name = record.public_model
    if not name or record.attempts or record.provider:
        return name
    from gateway import catalog

    current = catalog._current  # the in-memory snapshot; never loaded from here
    return name if current is not None and name in current.models else "other"


def _served(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The attempt that answered, else the last one tried."""
    for attempt in reversed(attempts):
        if attempt.get("outcome") == "ok":
            return attempt
    return attempts[-1] if attempts else None


def _deployment(attempt: dict[str, Any] | None) -> str:
    """The breaker's name for it (gateway.catalog.Target.deployment)."""
    if not attempt or not attempt.get("provider"):
        return ""
    return f"{attempt['provider']}/{attempt.get('upstream_model', '')}"


def guardrail_actions(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, check kind) pairs from a gateway.guardrails.service report:
    {"blocked": "policy:kind", "flagged": {"kind:what": n}, "redacted": {"PII_TYPE": n}}."""
    found = set()
    if report.get("blocked"):
        found.add(("blocked", str(report["blocked"]).rpartition(":")[2]))
    for name in report.get("flagged") or {}:
        found.add(("flagged", name.partition(":")[0]))
    if report.get("redacted"):
        found.add(("redacted", "pii"))  # only the PII check redacts
    return found


# --- access -----------------------------------------------------------------------------


def refusal(headers: dict[bytes, bytes], client: tuple[str, int] | None) -> tuple[int, str] | None:
    """None if the caller may scrape, else (status, reason).

    METRICS_TOKEN set: `Authorization: Bearer <token>` is required, from anywhere (else 401).
    Unset: the caller's address must be in METRICS_ALLOWED_NETWORKS (else 403); an empty list
    refuses everyone. The address is the connection's peer, so behind a proxy it is the
    proxy's unless the server rewrites it (uvicorn --proxy-headers --forwarded-allow-ips).
    """
    token = settings.METRICS_TOKEN
    if token:
        given = headers.get(b"authorization", b"")
        expected = b"Bearer " + token.encode()
        if hmac.compare_digest(given, expected):
            return None
        return 401, "A valid Authorization: Bearer <METRICS_TOKEN> header is required.\n"
    if client and _allowed(client[0], settings.METRICS_ALLOWED_NETWORKS):
        return None
    return 403, "Metrics are served only to the networks in METRICS_ALLOWED_NETWORKS.\n"


def _allowed(host: str, networks: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return any(address in net or (mapped and mapped in net) for net in _networks(networks))


@lru_cache(maxsize=8)
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in text.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                log.error("metrics: ignoring %r in METRICS_ALLOWED_NETWORKS", part.strip())
    return tuple(nets)


# --- the scrape -------------------------------------------------------------------------


async def scrape() -> tuple[bytes, str]:
    """The exposition (text format 0.0.4, what every Prometheus reads) and its content type:
    the counters, then the live gauges."""
    live = [*await _breaker_families()]
    if settings.DISTRIBUTED:
        live += await _stream_families()
    counted = await asyncio.to_thread(_render_counted)
    return counted + generate_latest(_Live(live).registry()), CONTENT_TYPE_PLAIN_0_0_4


def _render_counted() -> bytes:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return generate_latest(registry)


class _Live:
    """Families read at scrape time, in a registry of their own (so a multiprocess scrape
    doesn't sum one value per process)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


async def _breaker_families() -> list[Metric]:
    """Every catalog deployment's breaker state, as the portal's routing page shows it."""
    from gateway import breaker, catalog

    state = GaugeMetricFamily(
        BREAKER_STATE, "1 for the breaker's current state.", labels=["deployment", "state"]
    )
    failures = GaugeMetricFamily(
        BREAKER_FAILURES, "Failures within the breaker's window.", labels=["deployment"]
    )
    try:
        models = (await catalog.current()).models.values()
        names = sorted({t.deployment for m in models for t in m.targets})
        report = await asyncio.to_thread(breaker.health_report, names)
    except Exception as exc:  # noqa: BLE001 - the counters are still worth serving
        log.warning("metrics: breaker states unavailable: %r", exc)
        return []
    for name, health in report.items():
        for each in BREAKER_STATES:
            state.add_metric([name, each], 1.0 if health.state == each else 0.0)
        failures.add_metric([name], float(health.recent_failures))
    return [state, failures]


async def _stream_families() -> list[Metric]:
    """The usage stream's backlog: entries not yet stored, and those read but not acked."""
    import redis.asyncio as redis

    from billing.usage_stream import GROUP

    key = settings.USAGE_STREAM_KEY
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        length = await client.xlen(key)
        try:
            groups = await client.xinfo_groups(key)
        except redis.ResponseError:  # no stream yet
            groups = []
    except Exception as exc:  # noqa: BLE001 - Redis away: serve the rest
        log.warning("metrics: usage stream unavailable: %r", exc)
        return []
    finally:
        await client.aclose()
    pending = sum(g["pending"] for g in groups if _text(g["name"]) == GROUP)
    return [
        GaugeMetricFamily(STREAM_LENGTH, "Usage events in the Redis stream.", value=length),
        GaugeMetricFamily(
            STREAM_PENDING, "Usage events read by a writer, not yet stored.", value=pending
        ),
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def metric_names() -> set[str]:
    """Every sample name this module exposes (for dashboards and their test)."""
    names = set(LIVE_GAUGES)
    for metric in (REQUESTS, ERRORS, TOKENS, COST, CACHE, GUARDRAILS, LIMITS, ATTEMPTS):
        names.add(metric._name + "_total")
    for metric in (LATENCY, TTFT):
        names |= {metric._name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names

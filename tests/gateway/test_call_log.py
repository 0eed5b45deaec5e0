"""The call log's capture through the real gateway: bodies after redaction, timings, the
switches that keep bodies out, truncation, retention, request ids in the logs, and spans."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from observability import bodies, retention
from observability.models import CallBody
from portal import services
from portal.models import Product, Tenant
from portal.services import SYSTEM
from tests.fakes.control import Reply
from tests.gateway.helpers import apply_yaml, new_key

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.doe@example.com"
CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{url}", api_key: "{key}"}}
    models:
      - {{name: chat, deployments: [{{provider: oai, model: up}}], cache: off}}
      - {{name: quiet, deployments: [{{provider: oai, model: up}}], cache: off}}
    guardrails:
      - {{name: floor, scope: operator, checks: [{{check: pii, stage: both, action: redact}}]}}
"""


@pytest.fixture
def world(gateway, openai_fake):
    from gateway import catalog

    apply_yaml(CONFIG.format(url=openai_fake.base_url, key=openai_fake.api_key))
    catalog.invalidate()
    return gateway


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, text: str, model: str = "chat", **params):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **params
    )


def body_of(request_id: str) -> dict:
    return bodies.decode(CallBody.objects.get(request_id=request_id).data)


def test_bodies_are_kept_as_sent_upstream_after_redaction(world, openai_fake, stored_usage):
    client = sdk(world, new_key())
    openai_fake.script(Reply(text="Noted, [EMAIL_1] it is."))
    raw = ask(client, f"My email is {EMAIL}, remember it.")
    assert EMAIL in raw.parse().choices[0].message.content  # the caller gets it back
    request_id = raw.headers["x-request-id"]

    event = next(e for e in stored_usage() if e.request_id == request_id)
    kept = body_of(request_id)
    text = json.dumps(kept)
    assert EMAIL not in text  # neither side keeps the caller's value
    assert "[EMAIL_1]" in kept["request"]["messages"][0]["content"][0]["text"]
    assert kept["response"]["choices"][0]["message"]["content"][0]["text"] == (
        "Noted, [EMAIL_1] it is."
    )
    assert {"auth_ms", "guardrails_ms", "cache_ms", "upstream_ms", "total_ms"} <= set(event.timings)
    assert event.timings["total_ms"] >= event.timings["upstream_ms"] > 0


def test_a_stream_keeps_its_text_and_an_error_its_reason(world, openai_fake, stored_usage):
    client = sdk(world, new_key())
    openai_fake.script(Reply(text="one two three"))
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "count"}], stream=True
        )
    )
    request_id = chunks[0].id.removeprefix("chatcmpl-")
    openai_fake.fault(status=500, times=1)
    with pytest.raises(openai.InternalServerError) as failed:
        ask(client, "fail please")
    failed_id = failed.value.response.headers["x-request-id"]
    events = {e.request_id: e for e in stored_usage()}

    assert body_of(request_id)["response"] == {"output_text": "one two three"}
    assert "first_token_ms" in events[request_id].timings
    error = body_of(failed_id)["response"]["error"]
    assert error["type"] == "upstream_error" and events[failed_id].status >= 500


def test_tenant_and_product_switches_keep_bodies_out(world, openai_fake, stored_usage):
    quiet_tenant = new_key(tenant="hush")
    Tenant.objects.filter(slug="hush").update(log_bodies=False)
    tenant = services.tenant_get_or_create(slug="acme")
    app = services.application_create(actor=SYSTEM, tenant=tenant, name="bot")
    product = services.product_create(
        actor=SYSTEM, owner=None, name="Quiet", models=["quiet"], status="published"
    )
    Product.objects.filter(pk=product.pk).update(log_bodies=False)
    services.subscription_request(actor=SYSTEM, application=app, product=product)
    app_key = services.api_key_create(tenant=tenant, name="k", application=app).secret

    hushed = ask(sdk(world, quiet_tenant), "secret plans").headers["x-request-id"]
    through_quiet = ask(sdk(world, app_key), "secret plans", model="quiet").headers["x-request-id"]
    logged = ask(sdk(world, new_key()), "fine to keep").headers["x-request-id"]
    events = {e.request_id for e in stored_usage()}

    assert {hushed, through_quiet, logged} <= events  # every call is on record
    kept = set(CallBody.objects.values_list("request_id", flat=True))
    assert logged in kept and hushed not in kept and through_quiet not in kept


def test_a_body_over_the_limit_is_cut_and_marked(world, openai_fake, stored_usage, settings):
    settings.GATEWAY_LOG_BODY_MAX_BYTES = 2000
    request_id = ask(sdk(world, new_key()), "word " * 2000).headers["x-request-id"]
    stored_usage()
    row = CallBody.objects.get(request_id=request_id)
    assert row.truncated
    assert len(bodies.decode(row.data)["request"]["truncated"]) <= 2000


def test_retention_deletes_what_outlived_each_tenants_days(settings):
    settings.GATEWAY_LOG_MAX_RETENTION_DAYS = 10
    short = services.tenant_get_or_create(slug="short")
    long = services.tenant_get_or_create(slug="long")
    Tenant.objects.filter(pk=short.pk).update(log_retention_days=2)
    Tenant.objects.filter(pk=long.pk).update(log_retention_days=90)  # capped at 10
    now = timezone.now()
    data, size = bodies.encode({"request": {}, "response": {}})

    def body(name: str, tenant, days: float) -> None:
        CallBody.objects.create(request_id=name, tenant_id=tenant.pk if tenant else None,
                                created_at=now - timedelta(days=days), data=data, size=size)  # fmt: skip

    body("short-new", short, 1)
    body("short-old", short, 3)
    body("long-mid", long, 9)
    body("long-old", long, 11)
    body("nobody-old", None, 11)
    body("nobody-new", None, 1)

    assert retention.purge_call_bodies(now) == 3
    left = set(CallBody.objects.values_list("request_id", flat=True))
    assert left == {"short-new", "long-mid", "nobody-new"}


def test_every_log_line_of_a_call_carries_its_request_id(world):
    from waystation.logs import Json, RequestIdFilter

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(handler.format(record))
    handler.setFormatter(Json())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    try:
        with pytest.raises(openai.NotFoundError) as missing:
            ask(sdk(world, new_key()), "hi", model="no-such-model")
    finally:
        logger.removeHandler(handler)
    request_id = missing.value.response.headers["x-request-id"]
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if request_id in r["message"]]
    assert mine and all(r["request_id"] == request_id for r in mine)
    assert {"time", "level", "logger", "message"} <= set(mine[0])


def test_spans_cover_each_stage_of_a_call_when_tracing_is_on(world, openai_fake):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway import tracing

    exporter = InMemorySpanExporter()
    tracing.setup(exporter)
    try:
        request_id = ask(sdk(world, new_key()), "trace me").headers["x-request-id"]
    finally:
        tracing.teardown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"gateway.request", "auth", "guardrails.input", "cache.lookup",
            "upstream.complete"} <= set(spans)  # fmt: skip
    root = spans["gateway.request"]
    assert root.attributes["request_id"] == request_id
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    assert spans["upstream.complete"].parent.span_id == root.context.span_id

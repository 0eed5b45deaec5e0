"""The management API against its own OpenAPI schema (/api/schema/), every operation, fuzzed
with schemathesis as a tenant owner with a personal access token: no answer is a 5xx, and
every answer is documented (its status code, content type and body).

Path parameters are half the time generated, half the time the ids and slugs of a world of
one of everything, so the fuzzed bodies and queries reach the code behind the 404s.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing import controls
from gateway.models import LanguageModel
from portal import services
from portal.models import Membership, Product, Role
from portal.services import SYSTEM, Actor
from tests.security import tally

# Valid and invalid inputs; 15 generated cases per operation plus the coverage phase's boundary
# values of every parameter; a fixed seed. The whole file runs in about a minute.
CONFIG = schemathesis.Config.from_dict(
    {
        "suppress-health-check": ["all"],
        "generation": {
            "mode": "all",
            "max-examples": 15,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"coverage": {"enabled": True}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", get_wsgi_application(), config=CONFIG
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

REAL: dict[str, object] = {}  # the world's ids and slugs, for the test running now


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters:
        return st.just(path_parameters)
    real = dict(path_parameters)
    for name in real:
        real[name] = _real(context.operation.path, name)
    return st.sampled_from([path_parameters, real])


def _real(path: str, name: str) -> object:
    if name == "slug":
        return REAL["product"] if path.startswith("/api/v1/products/") else REAL["tenant"]
    if name == "month":
        return REAL["month"]
    if name == "request_id":
        return REAL["request_id"]
    for prefix, key in (
        ("/api/v1/applications/", "application"),
        ("/api/v1/keys/", "key"),
        ("/api/v1/subscriptions/", "subscription"),
        ("/api/v1/cache-policies/", "cache_policy"),
        ("/api/v1/guardrail-policies/", "guardrail"),
        ("/api/v1/tokens/", "token"),
        ("/budgets/", "budget"),
        ("/rate-limits/", "rate_limit"),
        ("/members/", "member"),
    ):
        if prefix in path:
            return REAL[key]
    return 1


def _user(name: str, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", **extra)


@pytest.fixture
def world(db):
    """alice owns a tenant with one of everything; her script authenticates with a token
    (another of her tokens is the one the fuzzer may revoke)."""
    alice, bob = _user("alice"), _user("bob")
    actor = Actor(alice)
    tenant = services.tenant_create(actor=actor, name="Fuzz", slug="fuzz")
    member = Membership.objects.create(user=bob, tenant=tenant, role=Role.DEVELOPER)
    app = services.application_create(actor=actor, tenant=tenant, name="app")
    key = services.api_key_create(tenant=tenant, name="key", application=app, all_models=True)
    LanguageModel.objects.create(name="demo-chat")
    product = services.product_create(
        actor=actor, owner=tenant, name="Fuzz product", slug="fuzz-product",
        models=["demo-chat"], status=Product.Status.PUBLISHED, approval_required=True,
    )  # fmt: skip
    sub = services.subscription_request(actor=actor, application=app, product=product)
    services.invitation_create(actor=actor, tenant=tenant, email="c@example.com", role="viewer")
    budget = controls.budget_set(actor=actor, tenant=tenant, amount_usd=Decimal("10"))
    limit = controls.rate_limit_set(actor=actor, tenant=tenant, requests_per_minute=100)
    guardrail = services.guardrail_policy_set(
        actor=actor, scope="tenant", tenant=tenant, name="guard", checks="default"
    )
    cache_policy = services.cache_policy_set(actor=SYSTEM, product=product, mode="exact")
    spare = services.personal_token_create(actor=actor, name="spare").token
    secret = services.personal_token_create(actor=actor, name="fuzz").secret
    REAL.clear()
    REAL.update(
        tenant=tenant.slug, product=product.slug, application=app.pk, key=key.api_key.pk,
        subscription=sub.pk, budget=budget.pk, rate_limit=limit.pk, guardrail=guardrail.pk,
        cache_policy=cache_policy.pk, token=spare.pk, member=member.pk,
        month=date.today().strftime("%Y-%m"), request_id="no-such-call",
    )  # fmt: skip
    return SimpleNamespace(secret=secret)


@pytest.fixture
def in_process_requests():
    """The WSGI app runs in the test's transaction: like Django's test client, keep the start
    and end of a request from closing the connection under it."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@schema.parametrize()
def test_every_operation_answers_as_documented_and_never_5xx(case, world, in_process_requests):
    response = case.call(headers={"Authorization": f"Bearer {world.secret}"})
    tally.add("fuzz: management API cases")
    tally.add("fuzz: 5xx answers", int(response.status_code >= 500))
    if not routed(response.request.url):
        # Path parameters that fit no route's converter (a float id, a slug with a space) never
        # reach the API: Django's own HTML 404 page answers them.
        assert response.status_code == 404, response.text[:300]
        return
    case.validate_response(response, checks=CHECKS)


def routed(url: str) -> bool:
    try:
        resolve(unquote(urlsplit(url).path))
    except Resolver404:
        return False
    return True

"""The call log's REST API: GET /api/v1/calls/ (the explorer's filters) and
GET /api/v1/calls/<request_id>/ (with bodies), by personal access token."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from portal import services
from tests.observability.calls_world import A_CALLS, build

pytestmark = pytest.mark.django_db

LIST = "/api/v1/calls/"


@pytest.fixture
def w():
    return build()


def as_(user) -> APIClient:
    token = services.personal_token_create(actor=services.Actor(user), name="script")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.secret}")
    return client


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["request_id"] for row in response.data["results"]}


def test_a_member_lists_only_their_tenants_calls(w):
    response = as_(w.victor).get(LIST)
    assert ids(response) == A_CALLS and response.data["count"] == 4
    assert ids(as_(w.mallory).get(LIST)) == {"b-1"}
    assert ids(as_(w.olga).get(LIST)) == A_CALLS | {"b-1"}


def test_the_tenant_parameter_narrows_and_strangers_get_404(w):
    assert ids(as_(w.olga).get(LIST, {"tenant": w.b.slug})) == {"b-1"}
    assert ids(as_(w.alice).get(LIST, {"tenant": w.a.slug})) == A_CALLS
    assert as_(w.alice).get(LIST, {"tenant": w.b.slug}).status_code == 404
    assert as_(w.alice).get(LIST, {"tenant": "nobody"}).status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "errors"}, {"bad-3", "err-4"}),
        ({"status": "5xx"}, {"err-4"}),
        ({"tag": "prod"}, {"ok-1", "slow-2"}),
        ({"guardrail": "blocked"}, {"bad-3"}),
        ({"guardrail": "redacted"}, {"slow-2", "err-4"}),
        ({"last": "24h"}, {"ok-1", "slow-2"}),
        ({"model": "gpt-x"}, {"slow-2"}),
        ({"cache": "none"}, {"bad-3"}),
        ({"latency_min": 1000}, {"slow-2"}),
        ({"cost_max": "0.1"}, {"ok-1"}),
        ({"end_user": "u1"}, {"ok-1"}),
        ({"request_id": "b-1"}, set()),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_the_filters_are_the_explorers(w, params, expected):
    assert ids(as_(w.alice).get(LIST, params)) == expected


def test_the_application_and_key_filters_take_ids(w):
    assert ids(as_(w.alice).get(LIST, {"application": w.web.pk})) == {"slow-2"}
    assert ids(as_(w.alice).get(LIST, {"key": w.bot_key.pk})) == {"ok-1"}


def test_invalid_filters_are_400_with_the_field(w):
    response = as_(w.alice).get(LIST, {"status": "teapot", "latency_min": "x"})
    assert response.status_code == 400
    assert set(response.data) == {"status", "latency_min"}


def test_the_list_is_paginated_and_newest_first(w):
    page = as_(w.alice).get(LIST, {"limit": 2})
    assert page.data["count"] == 4 and page.data["next"]
    assert [r["request_id"] for r in page.data["results"]] == ["ok-1", "slow-2"]
    row = page.data["results"][0]
    assert row["cost"] == "0.0100000000" and row["tags"] == ["prod", "eu"]
    assert row["guardrail_action"] == "" and "bodies" not in row
    assert row["attempts"][1] == {
        "provider": "demo",
        "model": "demo-chat",
        "outcome": "ok",
        "ms": 50,
    }


def test_one_call_comes_with_its_bodies(w):
    response = as_(w.victor).get(f"{LIST}ok-1/")
    assert response.status_code == 200
    assert response.data["bodies"]["request"]["messages"][0]["content"] == "Hi <b>[EMAIL_1]</b>"
    assert response.data["bodies"]["truncated"] is False and response.data["bodies_missing"] == ""
    assert response.data["timings"]["upstream_ms"] == 90


def test_a_call_without_bodies_says_why(w):
    response = as_(w.alice).get(f"{LIST}err-4/")
    assert response.data["bodies"] is None and response.data["bodies_missing"] == "expired"
    assert response.data["guardrail_action"] == "flagged, redacted"


def test_another_tenants_call_is_404(w):
    assert as_(w.mallory).get(f"{LIST}ok-1/").status_code == 404
    assert as_(w.alice).get(f"{LIST}b-1/").status_code == 404
    assert as_(w.olga).get(f"{LIST}b-1/").data["bodies"]["request"] == {"secret": "B only"}


def test_without_credentials_it_is_401():
    assert APIClient().get(LIST).status_code == 401
    bogus = APIClient()
    bogus.credentials(HTTP_AUTHORIZATION="Bearer wspat-not-a-real-token")
    assert bogus.get(f"{LIST}ok-1/").status_code == 401


def test_the_schema_documents_the_calls_api():
    spec = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    listing = spec["paths"]["/api/v1/calls/"]["get"]
    detail = spec["paths"]["/api/v1/calls/{request_id}/"]["get"]
    assert listing["operationId"] == "calls_list" and detail["operationId"] == "calls_retrieve"
    params = {p["name"]: p for p in listing["parameters"]}
    assert {"from", "to", "last", "tenant", "status", "tag", "guardrail", "cache", "limit"} <= set(
        params
    )
    assert params["guardrail"]["schema"]["enum"] == ["blocked", "flagged", "redacted"]
    assert params["latency_min"]["schema"]["type"] == "number"
    assert params["from"]["schema"]["format"] == "date-time"
    assert "bodies" in spec["components"]["schemas"]["CallDetailOutput"]["properties"]

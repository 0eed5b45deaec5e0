"""Request metadata through the real gateway: end user, session, trace id and tags, from the
x-waystation-* headers or the body, into the usage event, the logs and the upstream's own field;
malformed values are a 400 in the route's format, before anything goes upstream."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from gateway import metadata
from gateway.errors import GatewayError
from gateway.schemas import EmbeddingRequest
from gateway.usage import UsageRecord
from tests.gateway.helpers import apply_yaml, new_key

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = """
    providers:
      - {{name: oai, kind: openai, base_url: "{oai}", api_key: "{oai_key}"}}
      - {{name: ant, kind: anthropic, base_url: "{ant}", api_key: "{ant_key}"}}
    models:
      - {{name: gpt, deployments: [{{provider: oai, model: gpt-up}}]}}
      - {{name: claude, deployments: [{{provider: ant, model: claude-up}}]}}
"""

HEADERS = {
    "x-waystation-user": "user-42",
    "x-waystation-session": "sess-7",
    "x-waystation-trace-id": "trace-abc",
    "x-waystation-tags": "beta , search,beta,,eu",
}

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def key(gateway, openai_fake, anthropic_fake) -> str:
    from gateway import catalog

    apply_yaml(
        CONFIG.format(
            oai=openai_fake.base_url,
            oai_key=openai_fake.api_key,
            ant=anthropic_fake.base_url,
            ant_key=anthropic_fake.api_key,
        )
    )
    catalog.invalidate()
    return new_key()


@pytest.fixture
def oa(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


@pytest.fixture
def claude(gateway, key) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


def meta(event) -> tuple:
    return event.end_user, event.session_id, event.trace_id, event.tags


# --- into the usage event --------------------------------------------------------


def test_headers_land_in_the_usage_event(oa, openai_fake, stored_usage):
    raw = oa.chat.completions.with_raw_response.create(
        model="gpt", messages=HI, extra_headers=HEADERS
    )

    [event] = stored_usage()
    assert event.request_id == raw.headers["x-request-id"]
    assert meta(event) == ("user-42", "sess-7", "trace-abc", ["beta", "search", "eu"])
    assert openai_fake.last_request.json["user"] == "user-42"


def test_headers_land_in_the_usage_event_of_a_stream_on_the_anthropic_route(
    claude, anthropic_fake, stored_usage
):
    with claude.messages.stream(
        model="claude", max_tokens=20, messages=HI, extra_headers=HEADERS
    ) as stream:
        assert stream.get_final_text() == "echo: hi"

    [event] = stored_usage()
    assert event.route == "messages" and event.stream
    assert meta(event) == ("user-42", "sess-7", "trace-abc", ["beta", "search", "eu"])
    assert anthropic_fake.last_request.json["metadata"] == {"user_id": "user-42"}


def test_body_metadata_lands_when_no_header(oa, openai_fake, stored_usage):
    oa.chat.completions.create(
        model="gpt",
        messages=HI,
        user="body-user",
        metadata={"session_id": "body-sess", "trace_id": "body-trace", "tags": "a,b"},
    )

    [event] = stored_usage()
    assert meta(event) == ("body-user", "body-sess", "body-trace", ["a", "b"])
    sent = openai_fake.last_request.json
    assert sent["user"] == "body-user"
    # The body's own metadata still goes to an OpenAI-compatible upstream as it was sent.
    assert sent["metadata"] == {"session_id": "body-sess", "trace_id": "body-trace", "tags": "a,b"}


def test_metadata_user_id_is_the_end_user_when_the_body_has_no_user(oa, openai_fake, stored_usage):
    oa.chat.completions.create(model="gpt", messages=HI, metadata={"user_id": "meta-user"})

    [event] = stored_usage()
    assert event.end_user == "meta-user"
    assert openai_fake.last_request.json["user"] == "meta-user"


def test_the_body_wins_and_headers_fill_what_it_lacks(oa, openai_fake, stored_usage):
    oa.chat.completions.create(
        model="gpt",
        messages=HI,
        user="body-user",
        metadata={"session_id": "body-sess", "tags": "b, c"},
        extra_headers=HEADERS,
    )

    [event] = stored_usage()
    # user and session from the body; the trace from the header; tags from both, once each.
    assert meta(event) == (
        "body-user",
        "body-sess",
        "trace-abc",
        ["beta", "search", "eu", "b", "c"],
    )
    assert openai_fake.last_request.json["user"] == "body-user"


def test_without_metadata_the_event_fields_are_blank_and_no_user_goes_upstream(
    oa, openai_fake, stored_usage
):
    oa.chat.completions.create(model="gpt", messages=HI)

    [event] = stored_usage()
    assert meta(event) == ("", "", "", [])
    assert "user" not in openai_fake.last_request.json


def test_values_at_the_limits_are_accepted(oa, openai_fake, stored_usage):
    tags = [f"{i:02d}" + "t" * 62 for i in range(20)]
    oa.chat.completions.create(
        model="gpt",
        messages=HI,
        extra_headers={"x-waystation-user": "u" * 256, "x-waystation-tags": ",".join(tags)},
    )

    [event] = stored_usage()
    assert event.end_user == "u" * 256
    assert event.tags == tags
    assert openai_fake.last_request.json["user"] == "u" * 256


# --- to the upstream's own field ---------------------------------------------------


def test_header_user_reaches_the_openai_upstream_as_user(oa, openai_fake):
    oa.chat.completions.create(
        model="gpt", messages=HI, extra_headers={"x-waystation-user": "hdr-user"}
    )

    assert openai_fake.last_request.json["user"] == "hdr-user"


def test_header_user_reaches_the_anthropic_upstream_as_metadata_user_id(oa, claude, anthropic_fake):
    oa.chat.completions.create(
        model="claude", messages=HI, extra_headers={"x-waystation-user": "from-openai-route"}
    )
    assert anthropic_fake.last_request.json["metadata"] == {"user_id": "from-openai-route"}

    claude.messages.create(
        model="claude",
        max_tokens=20,
        messages=HI,
        extra_headers={"x-waystation-user": "from-messages-route"},
    )
    assert anthropic_fake.last_request.json["metadata"] == {"user_id": "from-messages-route"}


def test_anthropic_body_user_id_wins_over_the_header(claude, anthropic_fake, stored_usage):
    claude.messages.create(
        model="claude",
        max_tokens=20,
        messages=HI,
        metadata={"user_id": "body-user"},
        extra_headers={"x-waystation-user": "hdr-user", "x-waystation-session": "s-1"},
    )

    assert anthropic_fake.last_request.json["metadata"] == {"user_id": "body-user"}
    [event] = stored_usage()
    assert (event.end_user, event.session_id) == ("body-user", "s-1")


# --- malformed values ---------------------------------------------------------------

BAD_HEADERS = {
    "user-too-long": ("x-waystation-user", "u" * 257),
    "session-not-printable": ("x-waystation-session", "a\tb"),
    "trace-too-long": ("x-waystation-trace-id", "t" * 300),
    "trace-not-printable": ("x-waystation-trace-id", "trace\t1"),
    "too-many-tags": ("x-waystation-tags", ",".join(f"t{i}" for i in range(21))),
    "tag-too-long": ("x-waystation-tags", "ok," + "x" * 65),
    "tag-not-printable": ("x-waystation-tags", "ok,a\tb"),
}


@pytest.mark.parametrize("header,value", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_a_bad_header_is_a_400_naming_it_in_each_routes_format(
    oa, claude, openai_fake, anthropic_fake, stored_usage, header, value
):
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="gpt", messages=HI, extra_headers={header: value})
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == header
    assert caught.value.body["type"] == "invalid_request_error"
    assert header in caught.value.body["message"]

    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="claude", max_tokens=20, messages=HI, extra_headers={header: value}
        )
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert header in caught.value.body["error"]["message"]

    assert openai_fake.requests == [] and anthropic_fake.requests == []
    events = stored_usage()
    assert [(e.status, e.error_type) for e in events] == [(400, "invalid_request")] * 2
    assert all(meta(e) == ("", "", "", []) for e in events)


def test_a_bad_body_value_is_a_400_naming_the_body_field(oa, claude, openai_fake, anthropic_fake):
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="gpt", messages=HI, user="u" * 257)
    assert caught.value.body["param"] == "user"

    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="gpt", messages=HI, metadata={"trace_id": "a\nb"})
    assert caught.value.body["param"] == "metadata.trace_id"

    with pytest.raises(openai.BadRequestError) as caught:
        tags = ",".join(f"t{i}" for i in range(15))
        oa.chat.completions.create(
            model="gpt",
            messages=HI,
            metadata={"tags": tags},
            extra_headers={"x-waystation-tags": "h1,h2,h3,h4,h5,h6"},
        )
    assert caught.value.body["param"] == "x-waystation-tags"  # 21 between the two
    assert "21" in caught.value.body["message"]

    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="claude", max_tokens=20, messages=HI, metadata={"user_id": "u" * 257}
        )
    assert "metadata.user_id" in caught.value.body["error"]["message"]

    assert openai_fake.requests == [] and anthropic_fake.requests == []


# --- logs ------------------------------------------------------------------------------


def test_the_gateways_log_line_for_a_request_carries_the_trace_id(oa, caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(
            model="no-such-model", messages=HI, extra_headers={"x-waystation-trace-id": "tr-99"}
        )
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="no-such-model", messages=HI)

    lines = [r.getMessage() for r in caplog.records if r.name == "gateway"]
    assert any("trace=tr-99: 404" in line for line in lines), lines
    assert any("trace=-: 404" in line for line in lines), lines


# --- embeddings (for when the pipeline calls apply there too) -----------------------


def test_apply_fills_an_embeddings_request_user_from_the_header():
    record = UsageRecord.begin("r-1", "embeddings")
    req = EmbeddingRequest(model="e", inputs=("x",))
    headers = {b"x-waystation-user": b"emb-user", b"x-waystation-trace-id": b"tr-e"}

    out = metadata.apply(headers, req, record)

    assert out.user == "emb-user" and req.user is None
    assert (record.end_user, record.trace_id) == ("emb-user", "tr-e")
    kept = metadata.apply(headers, EmbeddingRequest("e", ("x",), user="own"), record)
    assert kept.user == "own"
    with pytest.raises(GatewayError) as caught:
        metadata.apply({b"x-waystation-user": b"\xff"}, req, record)
    assert caught.value.param == "x-waystation-user" and caught.value.status == 400

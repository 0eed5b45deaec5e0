"""Malformed and adversarial bodies, over real HTTP, to the live gateway's client routes.

Every answer is a 4xx with a JSON error in the route's own shape (OpenAI's `{"error": {...}}`,
Anthropic's `{"type": "error", "error": {...}}`), or a well-formed 200 where the input happens
to be valid; never a 5xx. Large bodies (up to GATEWAY_MAX_BODY_BYTES and past it) leave the
process's memory bounded. The demo provider answers, in process.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass

import httpx
import orjson
import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal import services
from portal.services import SYSTEM
from prompts import publishing
from prompts import services as library
from tests.gateway.helpers import DEMO, apply_yaml
from tests.security import tally

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True, eq=False)
class Route:
    name: str
    path: str
    shape: str  # "openai" or "anthropic": the route's error format
    body: dict  # a valid request
    ok: str  # what a 200's JSON carries: a key, or key=value
    done: bytes  # what ends a 200 stream


CHAT = Route(
    "chat",
    "/v1/chat/completions",
    "openai",
    {
        "model": "demo-chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": "thanks"},
        ],
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 1,
        "n": 1,
        "stop": ["\n\n"],
        "user": "u-1",
        "seed": 7,
        "metadata": {"k": "v"},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "a tool",
                    "parameters": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}},
                        "required": ["a"],
                    },
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {"type": "text"},
        "stream": False,
        "stream_options": {"include_usage": True},
    },
    "choices",
    b"data: [DONE]",
)
MESSAGES = Route(
    "messages",
    "/v1/messages",
    "anthropic",
    {
        "model": "demo-chat",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": "b"}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
        "tools": [{"name": "f", "description": "a tool", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u-1"},
        "stop_sequences": ["\n\n"],
        "temperature": 0.5,
        "top_k": 3,
        "stream": False,
    },
    "type=message",
    b"event: message_stop",
)
RESPONSES = Route(
    "responses",
    "/v1/responses",
    "openai",
    {
        "model": "demo-chat",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "user", "content": "thanks"},
        ],
        "max_output_tokens": 16,
        "temperature": 0.5,
        "metadata": {"k": "v"},
        "text": {"format": {"type": "text"}},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": "none",
        "store": False,
        "stream": False,
    },
    "object=response",
    b"response.completed",
)
EMBEDDINGS = Route(
    "embeddings",
    "/v1/embeddings",
    "openai",
    {"model": "demo-embed", "input": ["a", "b"], "dimensions": 8, "encoding_format": "float"},
    "object=list",
    b"",
)
PROMPT = Route(
    "prompt",
    "/api/p/acme/greet",
    "openai",
    {"text": "hi", "tone": "warm"},
    "output",
    b"event: done",
)
ROUTES = [CHAT, MESSAGES, RESPONSES, EMBEDDINGS, PROMPT]

GREET_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 2000},
        "tone": {"enum": ["warm", "dry"]},
    },
    "required": ["text"],
}


@pytest.fixture
def live(gateway):
    """The demo provider, a key that may use every model, and a published prompt API that key's
    application is subscribed to. Yields an HTTP client on the gateway that sends the key."""
    from gateway import auth, catalog

    apply_yaml(DEMO)
    catalog.invalidate()
    owner = services.tenant_get_or_create(slug="acme")
    prompt = library.prompt_create(tenant=owner, slug="greet", name="Greet")
    version = library.version_create(
        prompt=prompt,
        model="demo-chat",
        input_schema=GREET_SCHEMA,
        messages=[{"role": "user", "content": "Greet {{ text }}, {{ tone }}."}],
    )
    library.label_set(prompt=prompt, name="production", version=version)
    api = publishing.api_publish(
        tenant=owner, slug="greet", name="Greet API", prompt=prompt, approval_required=False
    )
    app = services.application_create(actor=SYSTEM, tenant=owner, name="fuzz")
    secret = services.api_key_create(
        tenant=owner, name="fuzz", application=app, all_models=True
    ).secret
    sub = services.subscription_request(actor=SYSTEM, application=app, product=api.product)
    if sub.status != sub.Status.ACTIVE:
        services.subscription_decide(actor=SYSTEM, subscription=sub, approve=True)
    auth._cache.clear()
    with httpx.Client(
        base_url=gateway.base_url, headers={"authorization": f"Bearer {secret}"}, timeout=60
    ) as client:
        yield client


# --- checking an answer ------------------------------------------------------------------


def check_answer(route: Route, response: httpx.Response) -> None:
    """A well-formed 200, or a 4xx with the route's JSON error; counted in the tally."""
    tally.add("fuzz: gateway cases")
    tally.add("fuzz: 5xx answers", int(response.status_code >= 500))
    status, text = response.status_code, response.text[:300]
    assert status < 500, f"{route.name}: {status} {text}"
    content_type = response.headers.get("content-type", "")
    if status == 200:
        if content_type.startswith("text/event-stream"):
            assert route.done and route.done in response.content, text
            assert b'{"error"' not in response.content, text
            assert b"event: error" not in response.content, text
            return
        body = orjson.loads(response.content)
        key, _, value = route.ok.partition("=")
        assert isinstance(body, dict) and key in body, (route.name, text)
        assert not value or body[key] == value, (route.name, text)
        return
    assert 400 <= status < 500, f"{route.name}: {status} {text}"
    # An error names what is wrong; it does not echo a large body back.
    assert len(response.content) < 64 * 1024, (route.name, status, len(response.content), text)
    assert content_type.startswith("application/json"), (route.name, status, content_type)
    body = orjson.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), (route.name, status, text)
    assert isinstance(error.get("message"), str) and error["message"], (route.name, text)
    assert isinstance(error.get("type"), str), (route.name, text)
    if route.shape == "anthropic":
        assert body["type"] == "error", (route.name, text)
    else:
        assert "type" not in body and "code" in error and "param" in error, (route.name, text)


def send(client: httpx.Client, route: Route, content: bytes, **headers: str) -> httpx.Response:
    headers.setdefault("content-type", "application/json")
    response = client.post(route.path, content=content, headers=headers)
    check_answer(route, response)
    return response


# --- strategies ---------------------------------------------------------------------------

# JSON text, not values: numbers Python cannot hold as floats, escapes of lone surrogates.
ODD_SCALARS = [
    "null", "true", "false", "0", "-0", "-1", "1.5", "1e400", "-1e400", "1e-400",
    str(2**31), str(2**63 - 1), str(2**63), str(-(2**63) - 1), str(2**64), str(2**70),
    '""', '" "', '"\\u0000"', '"\\ud800"', '"\\udfff"', '"\\ud800\\u0041"', '"\\udbff\\udfff"',
    '"demo-chat"', '"demo-embed"', '"user"', '"assistant"', '"tool"', '"text"', '"function"',
    '"base64"', '"json_schema"', '"data:,"', '"http://"', '"\\n"', '"%s%n"', '"{{ text }}"',
]  # fmt: skip
KEYS = [
    "model", "messages", "role", "content", "type", "text", "input", "tools", "function",
    "name", "parameters", "arguments", "stream", "max_tokens", "metadata", "format", "schema",
    "json_schema", "required", "properties", "items", "enum", "id", "tool_call_id", "source",
    "tool_use_id", "image_url", "url", "conversation", "previous_response_id", "__proto__", "",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(ODD_SCALARS),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.text(max_size=40).map(json.dumps),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10)).map(json.dumps)
fragments = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(keys, inner), max_size=4).map(
            lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=12,
)
big = st.sampled_from([1_000, 100_000]).flatmap(
    lambda n: st.sampled_from([json.dumps("x" * n), "[" + ",".join(["0"] * n) + "]"])
)

HOLE = "@@hole@@"


def positions(value, path=()):
    """Every place in a JSON value: (path, whether it holds an object)."""
    yield path, isinstance(value, dict)
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from positions(item, (*path, key))


def _at(body, path):
    for step in path:
        body = body[step]
    return body


def mutate(body: dict, path: tuple, how: str, key: str, fragment: str) -> bytes:
    """`body` as JSON text with `fragment` (JSON text) put at `path`: replacing the value
    there, beside it under a new key, or under a key the object already has (first or last)."""
    body = json.loads(json.dumps(body))
    if how == "replace" and path:
        _at(body, path[:-1])[path[-1]] = HOLE
    elif how == "replace":
        return fragment.encode()
    elif how == "delete" and path:
        del _at(body, path[:-1])[path[-1]]
        return json.dumps(body).encode()
    else:
        target = _at(body, path)
        if not isinstance(target, dict):
            return mutate(body, path, "replace", key, fragment)
        existing = next(iter(target), None)
        if how.startswith("duplicate") and existing is not None:
            key = json.dumps(existing)
        if how == "duplicate-first":
            target = {HOLE: HOLE, **target}
            if path:
                _at(body, path[:-1])[path[-1]] = target
            else:
                body = target
        else:
            target[HOLE] = HOLE
        text = json.dumps(body)
        return text.replace(f'"{HOLE}": "{HOLE}"', f"{key}: {fragment}", 1).encode()
    return json.dumps(body).replace(f'"{HOLE}"', fragment, 1).encode()


@st.composite
def mutated(draw, route: Route) -> bytes:
    places = list(positions(route.body))
    path, _ = draw(st.sampled_from(places))
    how = draw(st.sampled_from(["replace", "replace", "add", "duplicate", "duplicate-first"]))
    if how == "replace" and draw(st.integers(0, 9)) == 0:
        how = "delete"
    fragment = draw(st.one_of(fragments, big) if draw(st.integers(0, 19)) == 0 else fragments)
    return mutate(route.body, path, how, draw(keys), fragment)


@st.composite
def raw_bodies(draw, route: Route) -> bytes:
    valid = json.dumps(route.body).encode()
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return draw(st.sampled_from(NOT_JSON))
    if kind == 2:  # cut short
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == 3:  # bytes that are not UTF-8 (or are surrogates) inside a string
        bad = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]))
        return valid.replace(b'"hi"', b'"h' + bad + b'i"', 1).replace(b'"a"', b'"' + bad + b'"')
    if kind == 4:  # lone surrogates and other odd escapes in every string
        escape = draw(st.sampled_from(["\\ud800", "\\udc00", "\\ud800\\ud800", "\\u0000", "\\x41"]))
        return valid.replace(b'"hi"', f'"{escape}"'.encode())
    if kind == 5:  # random bytes spliced in
        at = draw(st.integers(0, len(valid)))
        return valid[:at] + draw(st.binary(min_size=1, max_size=8)) + valid[at:]
    return json.dumps(route.body, indent=draw(st.integers(0, 3))).encode() * draw(
        st.integers(2, 3)
    )  # two documents back to back


NOT_JSON = [
    b"", b" ", b"\n", b"null", b"[]", b"[{}]", b"1", b'"x"', b"true", b"{", b"}", b"{}",
    b"{'model': 'demo-chat'}", b"NaN", b"Infinity", b"-Infinity", b"\xef\xbb\xbf{}",
    b"model=demo-chat&messages=hi", b"<xml/>", b"\x00", b'{"model": "demo-chat",}',
    b'{"a":1}{"a":2}', b"[" * 10 + b"]" * 10, b"\xff\xfe{\x00}\x00",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json", "text/plain", "application/x-www-form-urlencoded", "",
    "application/json; charset=latin-1", "multipart/form-data; boundary=x",
]  # fmt: skip


# --- the tests --------------------------------------------------------------------------------


def test_the_valid_bodies_are_answered(live):
    for route in ROUTES:
        response = send(live, route, json.dumps(route.body).encode())
        assert response.status_code == 200, (route.name, response.text)
        streamed = {**route.body, "stream": True} if "stream" in route.body else route.body
        headers = {"accept": "text/event-stream"} if route is PROMPT else {}
        response = send(live, route, json.dumps(streamed).encode(), **headers)
        assert response.status_code == 200, (route.name, response.text)


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_mutated_bodies_get_a_4xx_or_a_wellformed_200(live, data):
    route = data.draw(st.sampled_from(ROUTES), label="route")
    body = data.draw(mutated(route), label="body")
    send(live, route, body)


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_raw_bodies_get_a_4xx_or_a_wellformed_200(live, data):
    route = data.draw(st.sampled_from(ROUTES), label="route")
    body = data.draw(raw_bodies(route), label="body")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content-type")
    send(live, route, body, **{"content-type": content_type})


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


DEPTHS = [100, 129, 255, 1000, 1025, 10_000]  # around MAX_JSON_DEPTH, orjson's and Python's limits
PLACES = {
    # route -> where the deep value goes: (path, how)
    CHAT: [((), "add"), (("metadata",), "add"), (("tools", 0, "function", "parameters"), "add"),
           (("messages", 1, "content"), "replace"), (("response_format",), "replace")],
    MESSAGES: [((), "add"), (("messages", 1, "content", 0, "input"), "add"),
               (("tools", 0, "input_schema"), "add"), (("messages", 0, "content", 0, "type"),
               "replace")],
    RESPONSES: [((), "add"), (("metadata",), "add"), (("tools", 0, "parameters"), "add"),
                (("input", 0, "content", 0, "type"), "replace")],
    EMBEDDINGS: [((), "add"), (("input", 0), "replace")],
    PROMPT: [((), "add"), (("text",), "replace")],
}  # fmt: skip


def test_the_body_depth_limit_is_exact():
    # decode_json measures depth with orjson's own write limit: hold it to MAX_JSON_DEPTH.
    from gateway.errors import GatewayError
    from gateway.pipeline import MAX_JSON_DEPTH, decode_json

    assert decode_json(nested(MAX_JSON_DEPTH).encode())
    assert decode_json(nested(MAX_JSON_DEPTH - 1, '{"a": 1}').encode())
    assert decode_json(("[" + ",".join(["[{}]"] * 500) + "]").encode())  # many, not deep
    with pytest.raises(GatewayError):
        decode_json(nested(MAX_JSON_DEPTH, '{"a": 1}').encode())
    with pytest.raises(GatewayError):
        decode_json(nested(MAX_JSON_DEPTH + 1).encode())


def test_deep_nesting_gets_a_4xx_or_a_wellformed_200(live):
    for route, places in PLACES.items():
        for depth in DEPTHS:
            send(live, route, nested(depth).encode())
            send(live, route, ('{"a":' * depth + "1" + "}" * depth).encode())
            for path, how in places:
                send(
                    live, route, mutate(route.body, path, how, '"deep"', nested(depth, '{"a": 1}'))
                )


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def large_bodies(limit: int) -> list[tuple[Route, bytes]]:
    """Bodies near the size limit (valid and not) and past it."""
    words = "lorem ipsum dolor sit amet " * (limit // 28 - 40)
    chat = dict(CHAT.body, messages=[{"role": "user", "content": words}], tools=[])
    return [
        (CHAT, json.dumps(chat).encode()),
        (MESSAGES, json.dumps(dict(MESSAGES.body, system=words)).encode()),
        (EMBEDDINGS, json.dumps(dict(EMBEDDINGS.body, input=[words[: limit // 2]])).encode()),
        (RESPONSES, json.dumps(dict(RESPONSES.body, input=[1] * (limit // 4))).encode()),
        (PROMPT, json.dumps({"text": words}).encode()),
        (CHAT, b'{"model": "demo-chat", "messages": "' + b"x" * (limit - 100) + b'"}'),
        (MESSAGES, b"[" + b"0," * (limit // 2 - 2) + b"0]"),
        (RESPONSES, b"\xff" * (limit - 10)),
        (CHAT, b"x" * (limit + 1)),
        (EMBEDDINGS, b'{"input": "' + b"x" * limit + b'"}'),
    ]


def test_large_bodies_keep_memory_bounded(live):
    limit = django_settings.GATEWAY_MAX_BODY_BYTES
    bodies = large_bodies(limit)
    assert all(len(body) <= limit for _, body in bodies[:-2])
    assert all(len(body) > limit for _, body in bodies[-2:])
    gc.collect()
    before = rss_kib()
    statuses = []
    for _ in range(2):
        for route, body in bodies:
            statuses.append(send(live, route, body).status_code)
    gc.collect()
    grown_mib = (rss_kib() - before) / 1024
    assert statuses[-2:] == [413, 413]
    assert statuses.count(200) >= 2 * 3, statuses
    assert grown_mib < 150, f"RSS grew {grown_mib:.0f} MiB over {len(statuses)} large bodies"

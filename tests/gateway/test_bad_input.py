"""Every client mistake gets a 4xx in the route's own error format, and a usage event."""

import httpx
import pytest

from tests.gateway.helpers import DEMO, apply_yaml, new_key


@pytest.fixture
def key(gateway):
    apply_yaml(DEMO)
    return new_key()


def post(gateway, path, key, content, headers=None):
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        **(headers or {}),
    }
    return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=10)


BAD_CHAT_BODIES = {
    "not-json": b"{nope",
    "empty": b"",
    "array": b"[]",
    "invalid-utf8": b'{"model": "demo-chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "lone-surrogate": b'{"model": "demo-chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "no-model": b'{"messages": [{"role": "user", "content": "hi"}]}',
    "model-number": b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
    "no-messages": b'{"model": "demo-chat"}',
    "empty-messages": b'{"model": "demo-chat", "messages": []}',
    "messages-object": b'{"model": "demo-chat", "messages": {"role": "user"}}',
    "bad-role": b'{"model": "demo-chat", "messages": [{"role": "wizard", "content": "hi"}]}',
    "content-number": b'{"model": "demo-chat", "messages": [{"role": "user", "content": 3}]}',
    "temperature-string": b'{"model": "demo-chat", "temperature": "hot", "messages": [{"role": "user", "content": "hi"}]}',
    "temperature-huge": b'{"model": "demo-chat", "temperature": 1e308, "messages": [{"role": "user", "content": "hi"}]}',
    "max-tokens-bool": b'{"model": "demo-chat", "max_tokens": true, "messages": [{"role": "user", "content": "hi"}]}',
    "n-zero": b'{"model": "demo-chat", "n": 0, "messages": [{"role": "user", "content": "hi"}]}',
    "stream-string": b'{"model": "demo-chat", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
    "tool-no-name": b'{"model": "demo-chat", "tools": [{"type": "function", "function": {}}], "messages": [{"role": "user", "content": "hi"}]}',
    "tool-msg-no-id": b'{"model": "demo-chat", "messages": [{"role": "tool", "content": "x"}]}',
    "image-bad-url": b'{"model": "demo-chat", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}',
    "deep-nesting": b'{"model": "demo-chat", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "response-format-bad": b'{"model": "demo-chat", "response_format": {"type": "xml"}, "messages": [{"role": "user", "content": "hi"}]}',
}


@pytest.mark.parametrize("body", BAD_CHAT_BODIES.values(), ids=BAD_CHAT_BODIES.keys())
def test_bad_chat_body_is_a_400_openai_error(gateway, key, body, stored_usage):
    resp = post(gateway, "/v1/chat/completions", key, body)

    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    [event] = stored_usage()
    assert (event.status, event.error_type) == (400, "invalid_request")
    assert event.request_id == resp.headers["x-request-id"]


BAD_MESSAGES_BODIES = {
    "not-json": b"{nope",
    "no-max-tokens": b'{"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}',
    "system-role": b'{"model": "demo-chat", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}',
    "blocks-bad": b'{"model": "demo-chat", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]}',
}


@pytest.mark.parametrize("body", BAD_MESSAGES_BODIES.values(), ids=BAD_MESSAGES_BODIES.keys())
def test_bad_messages_body_is_a_400_anthropic_error(gateway, key, body):
    resp = post(gateway, "/v1/messages", key, body)

    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404_model_not_found(gateway, key):
    resp = post(
        gateway,
        "/v1/chat/completions",
        key,
        b'{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}',
    )

    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def test_body_over_the_limit_is_413(gateway, key, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1000
    resp = post(gateway, "/v1/chat/completions", key, b'{"model": "' + b"x" * 2000 + b'"}')

    assert resp.status_code == 413
    assert resp.json()["error"]["message"].startswith("The request body exceeds")


def test_wrong_method_and_unknown_path_answer_json(gateway, key):
    wrong = httpx.get(
        gateway.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}
    )
    unknown = httpx.post(
        gateway.base_url + "/v1/nothing", headers={"authorization": f"Bearer {key}"}
    )

    assert wrong.status_code == 405 and "error" in wrong.json()
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_client_request_id_is_echoed(gateway, key):
    resp = post(
        gateway,
        "/v1/chat/completions",
        key,
        b'{"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"x-request-id": "trace-123"},
    )

    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "trace-123"

"""Self-tests over raw HTTP: the fault machinery, exact framing, and the Gemini fake.

The SDK-level checks for OpenAI, Azure and Anthropic live in test_fakes_sdk.py.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.control import Reply, ToolCallSpec


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # False when the server hung up before the body's proper end

    def json(self) -> Any:
        return json.loads(self.body)


def send(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Raw:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = None if body is None else json.dumps(body).encode()
    all_headers = {"content-type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        resp = conn.getresponse()
        try:
            data, complete = resp.read(), True
        except http.client.IncompleteRead as exc:
            data, complete = exc.partial, False
        return Raw(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, complete)
    finally:
        conn.close()


def sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event, data) per frame."""
    frames = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        if data:
            frames.append((event, "\n".join(data)))
    return frames


def openai_chat(fake: Any, stream: bool = False, **extra: Any) -> Raw:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}
    return send(
        "POST",
        fake.base_url + "/chat/completions",
        {**body, "stream": stream, **extra},
        {"authorization": f"Bearer {fake.api_key}"},
    )


# --- shared machinery, exercised through the OpenAI fake -------------------------------------


def test_records_every_request(openai_fake: Any) -> None:
    openai_chat(openai_fake)
    send("GET", openai_fake.root_url + "/nowhere?x=1", headers={"X-Custom": "yes"})
    first, second = openai_fake.requests
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {openai_fake.api_key}"
    assert first.json["messages"][0]["content"] == "one two three"
    method, path, query, headers, body = second
    assert (method, path, query, headers["x-custom"], body) == (
        "GET",
        "/nowhere",
        {"x": "1"},
        "yes",
        None,
    )


def test_unknown_path_gets_provider_404(openai_fake: Any) -> None:
    raw = send("POST", openai_fake.root_url + "/v1/chat/completion", {})
    assert raw.status == 404 and "Invalid URL" in raw.json()["error"]["message"]


def test_faults_queue_fifo_and_scripts_survive_status_faults(openai_fake: Any) -> None:
    openai_fake.script(Reply(text="scripted"))
    openai_fake.fault(status=429, retry_after=3)
    openai_fake.fault(status=503, times=2)
    first, second, third, fourth = (openai_chat(openai_fake) for _ in range(4))
    assert first.status == 429 and first.headers["retry-after"] == "3"
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.status == third.status == 503 and "retry-after" not in second.headers
    # The faulted requests never reached the handler, so the script is still there.
    assert fourth.json()["choices"][0]["message"]["content"] == "scripted"


def test_fault_until_cleared(openai_fake: Any) -> None:
    openai_fake.fault(status=500, times=None)
    assert [openai_chat(openai_fake).status for _ in range(3)] == [500, 500, 500]
    openai_fake.clear()
    assert openai_chat(openai_fake).status == 200
    with pytest.raises(TypeError):
        openai_fake.fault(stauts=500)


def test_reset_forgets_everything(openai_fake: Any) -> None:
    openai_fake.script(Reply(text="x"))
    openai_fake.fault(status=500)
    openai_chat(openai_fake)
    openai_fake.reset()
    assert openai_fake.requests == [] and openai_fake.pending_replies == 0
    assert (
        openai_chat(openai_fake).json()["choices"][0]["message"]["content"] == "echo: one two three"
    )


def test_break_after_sends_exact_frames_then_hangs_up(openai_fake: Any) -> None:
    openai_fake.fault(break_after=2)
    raw = openai_chat(openai_fake, stream=True)
    assert raw.status == 200 and not raw.complete
    assert len(sse(raw.body)) == 2


def test_break_after_on_plain_response_truncates_the_body(openai_fake: Any) -> None:
    openai_fake.fault(break_after=0)
    raw = openai_chat(openai_fake)
    assert not raw.complete and raw.body
    with pytest.raises(ValueError):
        raw.json()


def test_malformed_after(openai_fake: Any) -> None:
    openai_fake.fault(malformed_after=1)
    frames = sse(openai_chat(openai_fake, stream=True).body)
    assert len(frames) == 2
    json.loads(frames[0][1])
    with pytest.raises(ValueError):
        json.loads(frames[1][1])


def test_error_after_and_close_without_response(openai_fake: Any) -> None:
    openai_fake.fault(error_after=1, message="boom")
    frames = sse(openai_chat(openai_fake, stream=True).body)
    assert json.loads(frames[-1][1])["error"]["message"] == "boom"
    openai_fake.fault(close_without_response=True)
    with pytest.raises(http.client.RemoteDisconnected):
        openai_chat(openai_fake)


def test_delays(openai_fake: Any) -> None:
    openai_fake.fault(delay=0.2)
    started = time.monotonic()
    openai_chat(openai_fake)
    assert time.monotonic() - started >= 0.2
    openai_fake.fault(chunk_delay=0.02)
    started = time.monotonic()
    frames = sse(openai_chat(openai_fake, stream=True).body)
    assert time.monotonic() - started >= 0.02 * (len(frames) - 1)


def test_openai_stream_usage_n_and_omit_usage(openai_fake: Any) -> None:
    frames = [json.loads(d) for _, d in sse(openai_chat(openai_fake, True, n=2).body)[:-1]]
    assert {c["index"] for f in frames for c in f["choices"]} == {0, 1}
    assert all("usage" not in f for f in frames)  # no include_usage: no usage at all
    options = {"stream_options": {"include_usage": True}}
    frames = [json.loads(d) for _, d in sse(openai_chat(openai_fake, True, **options).body)[:-1]]
    assert all(f["usage"] is None for f in frames[:-1])
    assert frames[-1]["choices"] == [] and frames[-1]["usage"]["prompt_tokens"] == 3
    openai_fake.fault(omit_usage=True)
    frames = sse(openai_chat(openai_fake, True, **options).body)
    assert all(json.loads(d).get("usage") is None for _, d in frames[:-1])
    assert frames[-1][1] == "[DONE]"


def test_anthropic_stream_framing(anthropic_fake: Any) -> None:
    body = {
        "model": "c",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": anthropic_fake.api_key, "anthropic-version": "2023-06-01"}
    raw = send("POST", anthropic_fake.base_url + "/v1/messages", body, headers)
    frames = sse(raw.body)
    assert all(event == json.loads(data)["type"] for event, data in frames)
    assert [event for event, _ in frames] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert json.loads(frames[0][1])["message"]["usage"]["input_tokens"] == 1
    assert json.loads(frames[-2][1])["usage"] == {"output_tokens": 2}
    unversioned = send(
        "POST",
        anthropic_fake.base_url + "/v1/messages",
        body,
        headers={"x-api-key": anthropic_fake.api_key},
    )
    assert unversioned.status == 400
    assert unversioned.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


# --- Gemini --------------------------------------------------------------------------------


def gemini(fake: Any, action: str, body: dict[str, Any], query: str = "", **headers: str) -> Raw:
    url = f"{fake.base_url}/v1beta/models/gemini-2.0-flash:{action}{query}"
    return send("POST", url, body, headers or {"x-goog-api-key": fake.api_key})


CONTENTS = {
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "old question"}]},
        {"role": "model", "parts": [{"text": "old answer"}]},
        {"role": "user", "parts": [{"text": "new"}, {"text": "question"}]},
    ],
}


def test_gemini_generate_content(gemini_fake: Any) -> None:
    raw = gemini(gemini_fake, "generateContent", CONTENTS)
    candidate = raw.json()["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "echo: new question"}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    usage = raw.json()["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"]) == (8, 3)


def test_gemini_key_in_query_and_function_calls(gemini_fake: Any) -> None:
    gemini_fake.script(Reply(tool_calls=[ToolCallSpec("lookup", '{"q": "x"}')]))
    raw = gemini(gemini_fake, "generateContent", CONTENTS, f"?key={gemini_fake.api_key}", a="b")
    parts = raw.json()["candidates"][0]["content"]["parts"]
    assert parts == [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]
    assert gemini_fake.last_request.query["key"] == gemini_fake.api_key


def test_gemini_stream_sse(gemini_fake: Any) -> None:
    gemini_fake.script(Reply(text="one two three", tool_calls=[ToolCallSpec("f", "{}")]))
    raw = gemini(gemini_fake, "streamGenerateContent", CONTENTS, "?alt=sse")
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in raw.body
    chunks = [json.loads(d) for _, d in sse(raw.body)]
    assert len(chunks) == 4
    parts = [c["candidates"][0]["content"]["parts"][0] for c in chunks]
    assert "".join(p.get("text", "") for p in parts) == "one two three"
    assert parts[-1] == {"functionCall": {"name": "f", "args": {}}}
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 4  # cumulative: three words and "{}"
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None] * 3 + ["STOP"]


def test_gemini_stream_without_alt_sse_is_a_json_array(gemini_fake: Any) -> None:
    raw = gemini(gemini_fake, "streamGenerateContent", CONTENTS)
    assert isinstance(raw.json(), list) and len(raw.json()) == 3


def test_gemini_embeddings(gemini_fake: Any) -> None:
    one = {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 16}
    values = gemini(gemini_fake, "embedContent", one).json()["embedding"]["values"]
    assert len(values) == 16 and math.isclose(sum(v * v for v in values), 1.0)
    batch = {"requests": [one, {**one, "content": {"parts": [{"text": "bye"}]}}]}
    embeddings = gemini(gemini_fake, "batchEmbedContents", batch).json()["embeddings"]
    assert embeddings[0]["values"] == values and embeddings[1]["values"] != values


def test_gemini_errors(gemini_fake: Any) -> None:
    wrong = gemini(gemini_fake, "generateContent", CONTENTS, **{"x-goog-api-key": "nope"})
    assert (
        wrong.status == 400 and wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    )
    missing = gemini(gemini_fake, "generateContent", CONTENTS, **{"x-other": "1"})
    assert missing.status == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    gemini_fake.fault(status=429, retry_after=1)
    limited = gemini(gemini_fake, "generateContent", CONTENTS)
    assert limited.json()["error"] == {
        "code": 429,
        "message": "Fake gemini error (HTTP 429).",
        "status": "RESOURCE_EXHAUSTED",
    }
    gemini_fake.fault(error_after=1)
    frames = sse(gemini(gemini_fake, "streamGenerateContent", CONTENTS, "?alt=sse").body)
    assert json.loads(frames[-1][1])["error"]["status"] == "INTERNAL"

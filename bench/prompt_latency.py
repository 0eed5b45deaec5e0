"""A published prompt API's added latency, for bench/run.py's prompts phase.

Publishes a one-variable prompt on `bench-json` (the gateway's plain model on the JSON
upstream) for a bench application, subscribes it, then sends, interleaved so drift hits both
alike, one request each per round over keep-alive HTTP: the chat completion the prompt renders
to, sent as is, and the prompt API call (`POST /api/p/...` with the variables), which adds
loading the API, validating the variables, rendering, and shaping the answer. Prints JSON.

Usage: .venv/bin/python bench/prompt_latency.py GATEWAY_PORT [ROUNDS]
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from portal import services  # noqa: E402
from portal.services import SYSTEM  # noqa: E402
from prompts import publishing  # noqa: E402
from prompts import services as library  # noqa: E402

MODEL = "bench-json"
SYSTEM_TEXT = "You classify the sentiment of a customer's message. Answer with one word."
TEXT = "The parcel arrived two days late and the box was crushed."


def publish() -> tuple[str, str, str]:
    """(path, application key, operator key): a fresh API each run."""
    run = uuid.uuid4().hex[:8]
    tenant = services.tenant_get_or_create(slug="bench-prompts")
    prompt = library.prompt_create(tenant=tenant, slug=f"sentiment-{run}", name="Sentiment")
    version = library.version_create(
        prompt=prompt,
        model=MODEL,
        messages=[
            {"role": "system", "content": SYSTEM_TEXT},
            {"role": "user", "content": "{{ text }}"},
        ],
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1}},
            "required": ["text"],
        },
        parameters={"max_tokens": 64},
    )
    library.label_set(prompt=prompt, name="production", version=version)
    api = publishing.api_publish(
        tenant=tenant, slug=prompt.slug, name=f"Sentiment {run}", prompt=prompt,
        approval_required=False,
    )  # fmt: skip
    app = services.application_create(actor=SYSTEM, tenant=tenant, name=f"bench {run}")
    services.subscription_request(actor=SYSTEM, application=app, product=api.product)
    app_key = services.api_key_create(tenant=tenant, name="bench", application=app).secret
    direct_key = services.api_key_create(tenant=tenant, name="bench-direct", all_models=True)
    return publishing.api_path(api), app_key, direct_key.secret


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

    def post(self, path: str, payload: dict) -> float:
        data = json.dumps(payload).encode()
        started = time.perf_counter()
        self.conn.request("POST", path, data, self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
        return elapsed


def main() -> None:
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    path, app_key, direct_key = publish()
    chat = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": SYSTEM_TEXT},
            {"role": "user", "content": TEXT},
        ],
    }
    direct, prompt = Client(port, direct_key), Client(port, app_key)
    for _ in range(20):  # warm both paths (keys, catalog, connections)
        direct.post("/v1/chat/completions", chat)
        prompt.post(path, {"text": TEXT})
    timings: dict[str, list[float]] = {"chat": [], "prompt_api": []}
    for _ in range(rounds):
        timings["chat"].append(direct.post("/v1/chat/completions", chat))
        timings["prompt_api"].append(prompt.post(path, {"text": TEXT}))
    p50 = {name: round(statistics.median(values), 3) for name, values in timings.items()}
    print(
        json.dumps(
            {
                "rounds": rounds,
                "p50_ms": p50,
                "added_p50_ms": round(p50["prompt_api"] - p50["chat"], 3),
                "ratio": round(p50["prompt_api"] / p50["chat"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The response cache's added latency, for bench/run.py's cache phase.

Fills the `bench-cached` model's semantic partition of the bench tenant with N entries (the
eval set's paraphrase sources with real MiniLM embeddings, the rest random unit vectors that
never match, written through the cache service itself so keys are what the gateway derives),
then sends, interleaved so drift hits all alike, one request each per round over keep-alive
HTTP: straight to the upstream, through the gateway with the cache off, an exact hit, and a
paraphrase (a semantic lookup). Also times the lookup in process, without HTTP. Prints JSON.

Usage: .venv/bin/python bench/cache_latency.py GATEWAY_PORT UPSTREAM_PORT API_KEY [ENTRIES]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from gateway import auth  # noqa: E402
from gateway.cache import embedder, keys, service  # noqa: E402
from gateway.providers.openai.client import OpenAIChatCodec  # noqa: E402
from gateway.schemas import ChatResponse, Choice, Message, TextPart, Usage  # noqa: E402

SYSTEM = "You are the support assistant of an online shop. Answer briefly."
MODEL = "bench-cached"
PAIRS = Path(__file__).resolve().parent / "cache_eval" / "pairs.jsonl"


def body(model: str, question: str) -> dict:
    return {
        "model": model,
        "temperature": 0,
        "max_tokens": 64,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
    }


def answer(text: str) -> ChatResponse:
    message = Message("assistant", (TextPart(text),))
    return ChatResponse("bench", "gpt-4o-mini", (Choice(0, message, "stop"),), Usage(20, 10))


async def populate(principal, sources: list[str], entries: int) -> None:
    codec = OpenAIChatCodec()
    skip = {b"x-waystation-cache": b"no-cache"}
    rng = np.random.default_rng(7)
    for n in range(entries):
        real = n < len(sources)
        question = sources[n] if real else f"Filler question number {n} about order {n * 7}?"
        req = codec.parse_request(body(MODEL, question))
        lookup = await service.consult(principal, req, skip)
        if not real:  # a random direction: as costly to scan, never a neighbour
            vector = rng.standard_normal(embedder.DIMENSIONS).astype(np.float32)
            lookup.vector = vector / np.linalg.norm(vector)
            lookup.partition = keys.context_key(lookup.namespace, req, embedder.LOCAL_MODEL)
        await service.save(lookup, req, answer(f"answer {n}"), Decimal("0.0001"))


async def lookups(principal, queries: list[str]) -> list[float]:
    codec = OpenAIChatCodec()
    out = []
    for question in queries:
        req = codec.parse_request(body(MODEL, question))
        started = time.perf_counter()
        await service.consult(principal, req, {})
        out.append((time.perf_counter() - started) * 1000)
    return out


class Client:
    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"content-type": "application/json", **headers}

    def post(self, payload: dict) -> tuple[float, str]:
        data = json.dumps(payload).encode()
        started = time.perf_counter()
        self.conn.request("POST", "/v1/chat/completions", data, self.headers)
        response = response_of(self.conn)
        elapsed = (time.perf_counter() - started) * 1000
        if response[0] != 200:
            raise RuntimeError(f"HTTP {response[0]}: {response[2][:200]!r}")
        return elapsed, response[1]


def response_of(conn: http.client.HTTPConnection) -> tuple[int, str, bytes]:
    r = conn.getresponse()
    payload = r.read()
    return r.status, r.getheader("x-waystation-cache") or "", payload


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    gateway_port, upstream_port, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    entries = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    paraphrases = [p for p in pairs if p["label"] == "paraphrase"][:300]
    sources, queries = [p["a"] for p in paraphrases], [p["b"] for p in paraphrases]
    principal = asyncio.run(auth.authenticate({b"authorization": f"Bearer {key}".encode()}))
    started = time.perf_counter()
    asyncio.run(populate(principal, sources, entries))
    filled_s = time.perf_counter() - started

    bearer = {"authorization": f"Bearer {key}"}
    direct, gateway = Client(upstream_port, {}), Client(gateway_port, bearer)
    exact_question = "Say hello in one short sentence."
    gateway.post(body(MODEL, exact_question))  # stored: every later one is an exact hit
    gateway.post(body(MODEL, queries[0]))  # each worker process loads the model on first use
    gateway.post(body(MODEL, queries[1]))
    timings: dict[str, list[float]] = {"direct": [], "off": [], "exact": [], "semantic": []}
    outcomes: dict[str, int] = {}
    for question in queries[2:]:
        timings["direct"].append(direct.post(body("gpt-4o-mini", exact_question))[0])
        timings["off"].append(gateway.post(body("bench-json", exact_question))[0])
        ms, status = gateway.post(body(MODEL, exact_question))
        assert status == "hit", status
        timings["exact"].append(ms)
        ms, status = gateway.post(body(MODEL, question))
        outcomes[status] = outcomes.get(status, 0) + 1
        if status == "semantic-hit":
            timings["semantic"].append(ms)
    in_process = asyncio.run(lookups(principal, [f"{q} (variant)" for q in queries[2:]]))
    result = {
        "entries": entries,
        "fill_seconds": round(filled_s, 1),
        "rounds": len(queries) - 2,
        "outcomes": outcomes,
        "p50_ms": {name: round(p50(values), 3) for name, values in timings.items()},
        "in_process_lookup_p50_ms": round(p50(in_process), 3),
        "in_process_lookup_p90_ms": round(float(np.percentile(in_process, 90)), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Routing and breaker checks alone, in process: microseconds per request.

Runs the gateway's model choice (rules, `auto`) and deployment routing (balance order, shared
state refresh, breaker check and record, attempt log) with an upstream call that returns at
once, for a one-deployment model without rules (the baseline) and for bench-json-4 (four
deployments, ten rules evaluated). Needs the bench database that bench/run.py set up; prints
one JSON line. Usage: .venv/bin/python bench/routing_micro.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from gateway import catalog, choice, router  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.schemas import ChatRequest, Message, TextPart  # noqa: E402

ROUNDS, PER_ROUND = 7, 3000
PRINCIPAL = Principal(1, 1, "bench", True, frozenset(), "bench-app", "ws_bench")
HEADERS = {b"content-type": b"application/json", b"authorization": b"Bearer x"}


def request(model: str) -> ChatRequest:
    return ChatRequest(
        model,
        (
            Message("system", (TextPart("You are a helpful assistant."),)),
            Message("user", (TextPart("Say hello in one short sentence."),)),
        ),
        max_tokens=64,
        temperature=0,
    )


async def answer(target, kind):
    return target


async def route_once(req: ChatRequest) -> None:
    chosen = await choice.choose(PRINCIPAL, req, HEADERS)
    await router._serve(chosen.entry, answer, [])


async def measure(model: str) -> list[float]:
    req = request(model)
    medians = []
    for _ in range(ROUNDS):
        samples = []
        for _ in range(PER_ROUND):
            started = time.perf_counter_ns()
            await route_once(req)
            samples.append((time.perf_counter_ns() - started) / 1000)
        medians.append(statistics.median(samples))
    return medians


async def main() -> None:
    snapshot = await catalog.current()
    assert len(snapshot.models["bench-json-4"].targets) == 4, "run bench/run.py's setup first"
    for model in ("bench-json", "bench-json-4"):  # warm-up
        await measure(model)
    base, four = [], []
    for _ in range(2):  # interleaved, so drift hits both alike
        base += await measure("bench-json")
        four += await measure("bench-json-4")
    print(
        json.dumps(
            {
                "baseline_us_p50": statistics.median(base),
                "four_deployments_ten_rules_us_p50": statistics.median(four),
                "rules": len(snapshot.rules),
                "samples_each": len(base) * PER_ROUND,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

"""What the default guardrail policy (PII redaction on input and output, reversible; injection
rules on input) adds to a request with a 2 KB prompt, in process. Prints one JSON line.

Usage: .venv/bin/python bench/guardrails/latency.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.guardrails.policy import DEFAULT, compile_checks  # noqa: E402
from gateway.guardrails.service import Guard  # noqa: E402
from gateway.schemas import (  # noqa: E402
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    TextPart,
)

PARAGRAPH = (
    "Our customer wrote in about an order that arrived late and damaged; she asked for a "
    "replacement and a partial refund, and mentioned she had already called twice. "
)
PROMPT = (
    "You are a support assistant. Draft a reply to this ticket. "
    + PARAGRAPH * 8
    + "Her email is maria.lopez@example.com and her phone is +44 20 7946 0958. "
)
ANSWER = "Dear Maria, thank you for writing to us. " * 10 + "We will email maria.lopez@example.com."
SAMPLES = 2_000


def main() -> None:
    prompt = PROMPT[:2048].ljust(2048, " ")
    checks = compile_checks("default", [dict(c) for c in DEFAULT])
    req = ChatRequest("m", (Message("user", (TextPart(prompt),)),))
    timings = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        guard = Guard(checks, {})
        screened = guard.screen_input(req)
        answer = Message("assistant", (TextPart(ANSWER.replace("maria.lopez@example.com",
                                                                "[EMAIL_1]")),))  # fmt: skip
        guard.screen_response(ChatResponse("r", "m", (Choice(0, answer, "stop"),)))
        timings.append((time.perf_counter() - started) * 1000)
    assert "[EMAIL_1]" in screened.messages[0].text
    timings.sort()
    print(json.dumps({
        "prompt_bytes": len(prompt.encode()),
        "answer_chars": len(ANSWER),
        "samples": SAMPLES,
        "p50_ms": round(statistics.median(timings), 3),
        "p90_ms": round(timings[int(0.9 * SAMPLES)], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()

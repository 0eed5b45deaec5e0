"""Context assembly for a 200-turn conversation, in process: bench/run.py's context phase.

Builds a conversation of 200 turns (400 items) on the bench database, then times
`gateway.context.service.begin` (read the conversation, place the window, assemble the
messages) and `finish` (store the turn), on a model whose window holds a tenth of it, so the
window logic works on every call. Truncation only: summariser and embedding calls are model
calls of their own, measured elsewhere. Prints one JSON line.

Usage: .venv/bin/python bench/context_micro.py
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

from gateway import catalog  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.context import service as context  # noqa: E402
from gateway.context import state  # noqa: E402
from gateway.models import LanguageModel  # noqa: E402
from gateway.schemas import ChatRequest, ChatResponse, Choice, Message, TextPart  # noqa: E402
from portal import services  # noqa: E402

TURNS, SAMPLES = 200, 200
MODEL = "bench-context"


def text(n: int, who: str) -> str:
    return f"{who} turn {n}: " + "we discussed the venue, the budget and the guest list. " * 3


def main() -> None:
    LanguageModel.objects.update_or_create(
        name=MODEL, defaults={"context_window": 8_000, "output_reservation": 500}
    )
    tenant = services.tenant_get_or_create(slug="bench-context")
    principal = Principal(1, tenant.pk, tenant.slug, True, frozenset())
    history = []
    for n in range(TURNS):
        history.append(Message("user", (TextPart(text(n, "user")),)))
        history.append(Message("assistant", (TextPart(text(n, "assistant")),)))
    conversation = state.create(tenant.pk, None, "truncate", items=tuple(history))
    whole = state.window_items(conversation.pk, 0)[1]
    catalog.invalidate()
    answer = ChatResponse("r", "m", (Choice(0, Message("assistant", (TextPart("ok"),)), "stop"),))
    system = (Message("system", (TextPart("You plan events."),)),)

    async def measure() -> tuple[list[float], list[float], int]:
        begins, finishes, sent = [], [], 0
        for n in range(SAMPLES):
            found = await context.find(principal, conversation.public_id)
            req = ChatRequest(MODEL, (Message("user", (TextPart(f"Question {n}?"),)),))
            started = time.perf_counter()
            turn = await context.begin(principal, found, req, system)
            begins.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await context.finish(turn, answer, f"bench-{n}", MODEL)
            finishes.append((time.perf_counter() - started) * 1000)
            sent = turn.total_tokens
        return begins, finishes, sent

    begins, finishes, sent = asyncio.run(measure())
    print(
        json.dumps(
            {
                "turns": TURNS,
                "items": 2 * TURNS,
                "samples": SAMPLES,
                "conversation_tokens": whole,
                "sent_tokens": sent,
                "begin_p50_ms": round(statistics.median(begins), 3),
                "begin_p90_ms": round(sorted(begins)[int(0.9 * len(begins))], 3),
                "finish_p50_ms": round(statistics.median(finishes), 3),
            }
        )
    )


if __name__ == "__main__":
    main()

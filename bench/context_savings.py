"""Tokens sent with each context strategy over a long conversation, against sending the whole
conversation every turn: the worked example of README's "Conversations and context" section.

One conversation per strategy, 120 turns of about 60 tokens a side, on a model with a
4,000-token window (500 kept for the answer). The answers are written straight into the
conversation (no main-model call is needed to count what would be sent); the summariser is
the built-in `demo` provider through the gateway's own router, and retrieval embeds with the
local MiniLM. Prints a markdown table.

Usage: .venv/bin/python bench/context_savings.py   (on any database: it adds its own rows)
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "waystation.settings")

import django  # noqa: E402

django.setup()

from gateway import catalog, config  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.context import service as context  # noqa: E402
from gateway.schemas import ChatRequest, ChatResponse, Choice, Message, TextPart  # noqa: E402
from portal import services  # noqa: E402

TURNS = 120
CONFIG = """
providers:
  - {name: savings-demo, kind: demo}
models:
  - {name: savings-chat, context_window: 4000, output_reservation: 500,
     deployments: [{provider: savings-demo, model: demo-chat}], cache: off}
  - {name: savings-summarizer, deployments: [{provider: savings-demo, model: demo-chat}],
     cache: off}
"""
STRATEGIES = ("truncate", "summarize", "retrieve", "summarize+retrieve")


def said(n: int, who: str) -> str:
    topics = ("the venue", "the budget", "the guest list", "the catering", "the music")
    return (
        f"{who} on turn {n}: about {topics[n % 5]}, we weighed three options, their costs, "
        "the dates that work for everyone and what to confirm with the suppliers next week."
    )


async def run(principal: Principal, strategy: str) -> dict:
    conversation = await context.start(principal, strategy, "savings-summarizer")
    sent = whole = 0
    for n in range(TURNS):
        conversation = await context.find(principal, conversation.public_id)
        req = ChatRequest("savings-chat", (Message("user", (TextPart(said(n, "user")),)),))
        system = (Message("system", (TextPart("You help plan a company event."),)),)
        turn = await context.begin(principal, conversation, req, system)
        sent += turn.total_tokens
        whole += turn.tokens_without_strategy
        answer = Message("assistant", (TextPart(said(n, "assistant")),))
        await context.finish(
            turn, ChatResponse("r", "m", (Choice(0, answer, "stop"),)), f"s-{n}", req.model
        )
    return {"strategy": strategy, "sent": sent, "whole": whole, "last": turn.total_tokens}


def main() -> None:
    config.apply(config.parse(CONFIG))
    catalog.invalidate()
    tenant = services.tenant_get_or_create(slug="bench-savings")
    principal = Principal(0, tenant.pk, tenant.slug, True, frozenset())
    rows = [asyncio.run(run(principal, s)) for s in STRATEGIES]
    print(f"| strategy | tokens sent over {TURNS} turns | the whole conversation each turn "
          "| saved | last turn sent |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        saved = 1 - r["sent"] / r["whole"]
        print(f"| {r['strategy']} | {r['sent']:,} | {r['whole']:,} | {saved:.0%} | {r['last']:,} |")


if __name__ == "__main__":
    main()

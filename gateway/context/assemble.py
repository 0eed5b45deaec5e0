"""Which context reaches the model, within its window: a pure function of the conversation.

The budget is the model's context window less the answer's reservation. What must go is
fixed: the instructions, pinned items and the turn's own input; if those alone exceed the
budget, the request is refused before any upstream cost. The history gets what is left,
after the allowances of the summary and retrieved blocks where those strategies are on.
When the history no longer fits, the window's start moves forward past whole turns, far
enough to leave a quarter of the room free: it then stays put for a few turns, so the
prefix sent upstream (and what providers cache of it) stays stable, and the summariser
runs once per move, not once per turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.errors import GatewayError
from gateway.schemas import Message

STRATEGIES = ("truncate", "summarize", "retrieve")
LOW_WATER = 0.75  # the share of the room the history fills right after the window moves
SUMMARY_SHARE, SUMMARY_MAX = 5, 800  # the summary may take a fifth of the budget, at most 800
RETRIEVAL_SHARE, RETRIEVAL_MAX = 4, 1_500  # retrieved passages: a quarter, at most 1,500


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    message: Message
    tokens: int
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Budget:
    total: int | None  # None: the model's window is unknown, so everything is sent
    fixed: int  # instructions, pinned items and the new input
    summary: int  # allowances, zero where the strategy is off
    retrieval: int

    @property
    def history(self) -> int | None:
        if self.total is None:
            return None
        return self.total - self.fixed - self.summary - self.retrieval


@dataclass(slots=True)
class Window:
    start: int  # the first history seq in the window
    kept: list[Item] = field(default_factory=list)
    evicted: list[Item] = field(default_factory=list)  # newly out: [old start, new start)


def parse_strategy(text: str) -> frozenset[str]:
    """ "truncate", "summarize", "retrieve" or a combination such as "summarize+retrieve"."""
    parts = frozenset(p.strip() for p in text.replace(",", "+").split("+") if p.strip())
    unknown = parts - set(STRATEGIES)
    if not parts or unknown:
        raise GatewayError(
            "invalid_request",
            f"Unknown context strategy '{text}'. Use truncate, summarize, retrieve, or a "
            "combination joined with '+' (e.g. summarize+retrieve).",
            param="strategy",
        )
    return parts


def budget(window: int | None, reserve: int, fixed: int, strategy: frozenset[str]) -> Budget:
    if window is None:
        return Budget(None, fixed, 0, 0)
    total = window - reserve
    summary = min(total // SUMMARY_SHARE, SUMMARY_MAX) if "summarize" in strategy else 0
    retrieval = min(total // RETRIEVAL_SHARE, RETRIEVAL_MAX) if "retrieve" in strategy else 0
    result = Budget(total, fixed, summary, retrieval)
    if result.history is not None and result.history < 0:
        raise GatewayError(
            "invalid_request",
            f"This turn needs {fixed} tokens (instructions, pinned items and the new input) "
            f"but the model's context window leaves {total} after reserving {reserve} for "
            "the answer. Shorten the input or the instructions.",
            param="input",
            code="context_length_exceeded",
        )
    return result


def place_window(history: list[Item], start: int, room: int | None) -> Window:
    """`history`: the unpinned items before the new input, in order."""
    in_window = [item for item in history if item.seq >= start]
    total = sum(item.tokens for item in in_window)
    if room is None or total <= room:
        return Window(start, in_window)
    cut, target = 0, room * LOW_WATER
    while cut < len(in_window) and total > target:
        total -= in_window[cut].tokens
        cut += 1
    # Start on a user message: an answer or a tool result without its question breaks the turn.
    while cut < len(in_window) and in_window[cut].message.role != "user":
        total -= in_window[cut].tokens
        cut += 1
    new_start = in_window[cut].seq if cut < len(in_window) else history[-1].seq + 1
    return Window(new_start, in_window[cut:], in_window[:cut])

"""The `auto` model: the cheapest candidate whose capabilities and tier fit the request.

A fast heuristic classifier puts each prompt in a complexity tier (1 simple, 2 moderate,
3 complex) from signals in its text; a candidate fits when its tier is at least that, it has
every capability the request uses (tools, vision, JSON mode) and its context window holds the
prompt plus the answer. No model call, no tokenizer: it runs in microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal

from gateway.catalog import ModelEntry
from gateway.errors import GatewayError
from gateway.rules import Facts
from gateway.schemas import ImagePart

CAPABILITIES = ("tools", "vision", "json")
DEFAULT_TIER = 2  # a candidate the config didn't tier
DEFAULT_ANSWER_TOKENS = 1024

CODE = re.compile(
    r"```|\b(def|class|function|import|return|const|SELECT|stack ?trace|traceback|exception|"
    r"compile[rs]?|regex|refactor|bug|segfault)\b|[{};]\s*$",
    re.IGNORECASE | re.MULTILINE,
)
REASONING = re.compile(
    r"\b(prove|proof|derive|step[- ]by[- ]step|analy[sz]e|trade-?offs?|architecture|design|"
    r"optimi[sz]e|complexity|compare|evaluate|plan|strategy|why)\b",
    re.IGNORECASE,
)
MATH = re.compile(
    r"\b(integral|derivative|equation|theorem|matrix|probability|eigen\w*)\b|\d\s*[\^*/]\s*\d",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Needs:
    tier: int
    signals: tuple[str, ...]
    capabilities: frozenset[str]
    tokens: int  # prompt plus the answer's room


def assess(facts: Facts) -> Needs:
    text = facts.last_user_text
    signals = []
    if CODE.search(text):
        signals.append("code")
    reasoning = len(REASONING.findall(text))
    if reasoning:
        signals.append("reasoning")
    if MATH.search(text):
        signals.append("math")
    if facts.prompt_tokens > 6000:
        signals.append("long")
    if text.count("?") >= 3:
        signals.append("many-questions")
    tier = 1
    if signals:
        tier = 2
    if reasoning >= 2 or len(signals) >= 3 or ("code" in signals and reasoning):
        tier = 3
    if tier == 1 and len(text.split()) > 150:
        tier, signals = 2, [*signals, "wordy"]
    return Needs(
        tier,
        tuple(signals) or ("simple",),
        _capabilities(facts),
        facts.prompt_tokens + (facts.req.max_tokens or DEFAULT_ANSWER_TOKENS),
    )


def _capabilities(facts: Facts) -> frozenset[str]:
    req = facts.req
    needed = set()
    if req.tools:
        needed.add("tools")
    if any(isinstance(p, ImagePart) for m in req.messages for p in m.content):
        needed.add("vision")
    if req.response_format is not None and req.response_format.type != "text":
        needed.add("json")
    return frozenset(needed)


def choose(auto: ModelEntry, candidates: list[ModelEntry], facts: Facts) -> tuple[ModelEntry, str]:
    """The model to serve with, its fallbacks extended by the other fitting candidates, and
    the reason, for the x-waystation-route header and the usage event."""
    needs = assess(facts)
    able = [
        m
        for m in candidates
        if m.targets
        and m.mode == "chat"
        and needs.capabilities <= m.capabilities
        and (m.context_window is None or m.context_window >= needs.tokens)
    ]
    if not able:
        wanted = ", ".join(sorted(needs.capabilities)) or "none"
        raise GatewayError(
            "invalid_request",
            f"No model behind '{auto.name}' can serve this request (capabilities needed: "
            f"{wanted}; about {needs.tokens} tokens of context).",
            param="model",
        )
    fitting = sorted((m for m in able if (m.tier or DEFAULT_TIER) >= needs.tier), key=_cost)
    if not fitting:  # nothing strong enough: the strongest there is
        fitting = sorted(able, key=lambda m: (-(m.tier or DEFAULT_TIER), _cost(m)))
    chosen, rest = fitting[0], [m.name for m in fitting[1:]]
    reason = (
        f"auto; model={chosen.name}; tier={needs.tier}; signals={'+'.join(needs.signals)}; "
        f"fits={len(fitting)}"
    )
    fallbacks = tuple(dict.fromkeys([*chosen.fallbacks, *rest]))
    return replace(
        chosen, fallbacks=fallbacks, fallback_on=chosen.fallback_on | {"exhausted"}
    ), reason


def _cost(entry: ModelEntry) -> tuple[int, Decimal]:
    """Blended price per million tokens (prompts run ~3x longer than answers); unpriced last."""
    if entry.price is None:
        return (1, Decimal(0))
    return (0, (3 * entry.price.input_per_mtok + entry.price.output_per_mtok) / 4)

"""A conversation turn, as the pipeline uses it: `begin` assembles what goes upstream from the
stored conversation, `finish` stores the turn's input and answer once it has succeeded.

`begin` reads the conversation once, places the window (gateway.context.assemble), extends
the summary with what the window left behind (summarize), indexes and searches passages
(retrieve), and records what was sent for the portal's inspector.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway import catalog
from gateway.context import assemble, retrieval, state, summarize
from gateway.context.messages import count, count_text
from gateway.errors import GatewayError
from gateway.models import Conversation
from gateway.schemas import ChatRequest, ChatResponse, Message, TextPart

SUMMARY_HEADING = "Summary of the earlier conversation:"
CONTEXT_OPEN, CONTEXT_CLOSE = "<retrieved_context>", "</retrieved_context>"

_db = sync_to_async  # every call below runs the ORM in a worker thread


def _in_thread(fn):
    return _db(fn, thread_sensitive=False)


@dataclass(slots=True)
class Turn:
    conversation_id: int
    conversation: str  # its public id
    first_new_seq: int
    new_items: tuple[Message, ...]
    request: ChatRequest  # what goes upstream
    blocks: list[dict] = field(default_factory=list)
    budget: int | None = None
    total_tokens: int = 0
    tokens_without_strategy: int = 0


def not_found(what: str, public_id: str, param: str) -> GatewayError:
    return GatewayError(
        "not_found", f"No {what} with id '{public_id}'.", param=param, code="not_found"
    )


async def find(principal, public_id: str, param: str = "conversation") -> Conversation:
    found = await _in_thread(state.find)(principal.tenant_id, public_id)
    if found is None:
        raise not_found("conversation", public_id, param)
    return found


async def start(
    principal,
    strategy: str | None = None,
    summarizer_model: str = "",
    metadata: dict | None = None,
    items: tuple[Message, ...] = (),
) -> Conversation:
    strategy = strategy or settings.GATEWAY_CONTEXT_STRATEGY
    assemble.parse_strategy(strategy)
    return await _in_thread(state.create)(
        principal.tenant_id, principal.key_id, strategy, summarizer_model, metadata, items
    )


async def after_response(principal, previous_id: str) -> Conversation:
    """The conversation a response continues; a fork when it isn't the latest of its own."""
    previous = await _in_thread(state.response)(principal.tenant_id, previous_id)
    if previous is None:
        raise not_found("response", previous_id, "previous_response_id")
    conversation = previous.conversation
    if previous.upto == conversation.next_seq:
        return conversation
    return await _in_thread(state.fork)(conversation, previous.upto)


async def begin(
    principal, conversation: Conversation, req: ChatRequest, instructions: tuple[Message, ...]
) -> Turn:
    strategy = assemble.parse_strategy(conversation.strategy)
    entry = (await catalog.current()).models.get(req.model)
    window = entry.context_window if entry is not None else None
    reserve = (
        req.max_tokens
        or (entry.output_reservation if entry is not None else None)
        or settings.GATEWAY_CONTEXT_OUTPUT_RESERVE
    )
    history, history_tokens = await _history(conversation)
    pinned = [item for item in history if item.pinned]
    unpinned = [item for item in history if not item.pinned]
    instruction_text = "\n\n".join(m.text for m in instructions if m.text)
    new_tokens = sum(count(m) for m in req.messages)
    fixed = (
        (count_text(instruction_text) if instruction_text else 0)
        + sum(item.tokens for item in pinned)
        + new_tokens
        + 3  # the reply's priming
    )
    budget = assemble.budget(window, reserve, fixed, strategy)
    placed = assemble.place_window(unpinned, conversation.window_from, budget.history)
    summary = conversation.summary if "summarize" in strategy else ""
    summary_tokens = conversation.summary_tokens if summary else 0
    if placed.evicted:
        if "summarize" in strategy:
            model = (
                conversation.summarizer_model
                or settings.GATEWAY_CONTEXT_SUMMARIZER_MODEL
                or req.model
            )
            summary, summary_tokens = await summarize.extend(
                principal, model, summary, placed.evicted, budget.summary
            )
        if "retrieve" in strategy:
            await retrieval.index_items(principal.tenant_id, conversation.pk, placed.evicted)
        await _in_thread(state.move_window)(
            conversation.pk, placed.start, summary if "summarize" in strategy else None,
            summary_tokens,
        )  # fmt: skip
    retrieved = []
    if "retrieve" in strategy:
        query = "\n".join(m.text for m in req.messages if m.role == "user")
        retrieved = await retrieval.search(
            principal.tenant_id, conversation.pk, query, budget.retrieval
        )
    system_text, blocks = _system_blocks(instruction_text, summary, summary_tokens, retrieved)
    messages = ([Message("system", (TextPart(system_text),))] if system_text else []) + [
        item.message for item in pinned + placed.kept
    ]
    first_new = conversation.next_seq
    blocks += [
        _items_block("pinned", pinned),
        _items_block("history", placed.kept),
        {"kind": "input", "tokens": new_tokens,
         "seqs": list(range(first_new, first_new + len(req.messages)))},
    ]  # fmt: skip
    blocks = [b for b in blocks if b["tokens"]]
    upstream = replace(
        req,
        messages=(*messages, *req.messages),
        extra={k: v for k, v in req.extra.items() if k != "conversation"},
    )
    return Turn(
        conversation_id=conversation.pk,
        conversation=conversation.public_id,
        first_new_seq=first_new,
        new_items=req.messages,
        request=upstream,
        blocks=blocks,
        budget=budget.total,
        total_tokens=sum(b["tokens"] for b in blocks) + 3,
        tokens_without_strategy=(count_text(instruction_text) if instruction_text else 0)
        + history_tokens
        + new_tokens
        + 3,
    )


@dataclass(slots=True)
class _Known:
    items: list[assemble.Item]  # pinned, and from the window's start on
    tokens: int  # of every item
    next_seq: int


# Items never change once written, so each process keeps what it read of the conversations
# it serves and reads only what was appended since (by any process).
_known: OrderedDict[int, _Known] = OrderedDict()
MAX_KNOWN = 256


async def _history(conversation: Conversation) -> tuple[list[assemble.Item], int]:
    known = _known.pop(conversation.pk, None)
    since = known.next_seq if known else 0
    new, tokens = await _in_thread(state.window_items)(
        conversation.pk, conversation.window_from, since
    )
    items = [
        i for i in (known.items if known else []) if i.pinned or i.seq >= conversation.window_from
    ] + new
    total = (known.tokens if known else 0) + tokens
    next_seq = items[-1].seq + 1 if items else since
    _known[conversation.pk] = _Known(items, total, max(next_seq, since))
    while len(_known) > MAX_KNOWN:
        _known.popitem(last=False)
    return items, total


def forget() -> None:
    """Drop what this process knows of conversations (tests)."""
    _known.clear()


def _system_blocks(
    instructions: str, summary: str, summary_tokens: int, retrieved: list[dict]
) -> tuple[str, list[dict]]:
    parts, blocks = [], []
    if instructions:
        parts.append(instructions)
        blocks.append({"kind": "instructions", "tokens": count_text(instructions)})
    if summary:
        parts.append(f"{SUMMARY_HEADING}\n{summary}")
        blocks.append({"kind": "summary", "tokens": summary_tokens, "text": summary})
    if retrieved:
        passages = "\n\n".join(r["text"] for r in retrieved)
        parts.append(
            "Passages retrieved from earlier in this conversation and from attached documents,"
            f" most relevant first:\n{CONTEXT_OPEN}\n{passages}\n{CONTEXT_CLOSE}"
        )
        blocks.append(
            {"kind": "retrieved", "tokens": sum(r["tokens"] for r in retrieved),
             "chunks": [{k: r[k] for k in ("chunk", "score", "tokens", "text")}
                        for r in retrieved]}
        )  # fmt: skip
    return "\n\n".join(parts), blocks


def _items_block(kind: str, items: list) -> dict:
    return {"kind": kind, "tokens": sum(i.tokens for i in items), "seqs": [i.seq for i in items]}


async def finish(
    turn: Turn,
    resp: ChatResponse,
    request_id: str,
    model: str,
    response_id: str = "",
    output_id: str | None = None,
) -> tuple[int, int, int]:
    """Store the turn's input and answer; returns (input from, output from, next seq)."""
    answer = tuple(choice.message for choice in resp.choices[:1])
    assembly = {
        "request_id": request_id,
        "model": model,
        "budget": turn.budget,
        "blocks": turn.blocks,
        "total_tokens": turn.total_tokens,
        "tokens_without_strategy": turn.tokens_without_strategy,
    }
    return await _in_thread(state.record_turn)(
        turn.conversation_id, turn.new_items, answer, output_id, response_id, assembly
    )

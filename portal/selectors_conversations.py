"""Reads behind the portal's conversation inspector: a tenant's server-side conversations, and
for one of them, its items turn by turn next to what each turn sent upstream.

Every read is scoped by the tenant: another tenant's conversation is not found (404), and so
is an expired one, as the gateway itself no longer serves it (gateway.context.state.find).
Each turn is one ContextAssembly row; its items are those from its `first_new_seq` up to the
next turn's, so a turn shows its input, the answer stored with it and anything added before
the next turn.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from gateway.context.messages import from_json
from gateway.models import ContextAssembly, ContextChunk, Conversation, ConversationItem
from portal.models import Tenant

PAGE_SIZE = 50
EXCERPT_CHARS = 400

# The blocks of an assembly, as the inspector names them (gateway.context.service.begin).
BLOCK_LABELS = {
    "instructions": "Instructions",
    "summary": "Summary",
    "retrieved": "Retrieved passages",
    "pinned": "Pinned items",
    "history": "History",
    "input": "New input",
}


def _live(tenant: Tenant):
    return Conversation.objects.filter(tenant_id=tenant.pk).exclude(expires_at__lt=timezone.now())


def conversations_of(*, tenant: Tenant):
    """The tenant's live conversations, last used first, with their item and turn counts."""
    turns = (
        ContextAssembly.objects.filter(conversation=OuterRef("pk"))
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        _live(tenant)
        .annotate(
            # Items are only ever appended (or copied 0..n-1 by a fork): next_seq counts them.
            item_count=F("next_seq"),
            turn_count=Coalesce(Subquery(turns, output_field=IntegerField()), 0),
        )
        .defer("summary")
        .order_by("-updated_at", "-pk")
    )


def access_conversation(*, tenant: Tenant, public_id: str) -> Conversation:
    conversation = _live(tenant).filter(public_id=public_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


# --- the inspector ----------------------------------------------------------------------


@dataclass
class ItemView:
    seq: int
    public_id: str
    role: str
    text: str
    tool_calls: list[dict]  # {id, name, arguments}
    tool_call_id: str | None
    is_error: bool
    images: int
    tokens: int
    pinned: bool


@dataclass
class Span:
    first: int
    last: int

    @property
    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}–{self.last}"


@dataclass
class ChunkView:
    id: int | None
    score: float
    tokens: int
    text: str
    item_seq: int | None  # the conversation item it was cut from, if any
    document: str  # else the title of its document ("" once the chunk is gone)


@dataclass
class BlockView:
    kind: str
    label: str
    tokens: int
    share: float  # % of the turn's total
    spans: list[Span] = field(default_factory=list)
    text: str = ""
    chunks: list[ChunkView] = field(default_factory=list)

    @property
    def items_label(self) -> str:
        return items_label(self.spans)


@dataclass
class TurnView:
    number: int
    assembly: ContextAssembly | None  # None: items from before the first recorded turn
    items: list[ItemView]
    blocks: list[BlockView] = field(default_factory=list)
    left_out: list[Span] = field(default_factory=list)  # earlier items not sent as such
    overhead: int = 0  # tokens of the total in no block (the reply's priming)
    budget_pct: float | None = None
    saved: int = 0
    saved_pct: float = 0.0
    searchable: bool = False  # items out of the window are indexed when the strategy retrieves

    @property
    def left_out_label(self) -> str:
        return items_label(self.left_out)

    @property
    def summarised(self) -> bool:
        return any(b.kind == "summary" for b in self.blocks)

    @property
    def extra(self) -> int:
        """Tokens sent beyond the whole conversation (retrieved passages added to it all)."""
        return max(0, -self.saved)


@dataclass
class Inspection:
    conversation: Conversation
    items: int
    tokens: int  # of every stored item
    before: TurnView | None  # items the conversation started with, before any turn
    turns: list[TurnView]
    sent: int  # tokens sent upstream over every turn
    without: int  # what the same turns would have sent with the whole conversation
    saved: int
    saved_pct: float

    @property
    def sections(self) -> list[TurnView]:
        return ([self.before] if self.before else []) + self.turns

    @property
    def extra(self) -> int:
        return max(0, -self.saved)


def spans(seqs) -> list[Span]:
    """[0, 1, 2, 5, 7, 8] -> 0–2, 5, 7–8."""
    out: list[Span] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1].last + 1:
            out[-1].last = seq
        else:
            out.append(Span(seq, seq))
    return out


def items_label(found: list[Span]) -> str:
    if not found:
        return ""
    one = len(found) == 1 and found[0].first == found[0].last
    return ("item " if one else "items ") + ", ".join(s.label for s in found)


def _pct(part: int, whole: int | None) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _item(row: ConversationItem) -> ItemView:
    message = from_json(row.message)
    return ItemView(
        seq=row.seq,
        public_id=row.public_id,
        role=message.role,
        text=message.text,
        tool_calls=[
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ],
        tool_call_id=message.tool_call_id,
        is_error=message.is_error,
        images=sum(1 for p in message.content if getattr(p, "type", "") == "image"),
        tokens=row.tokens,
        pinned=row.pinned,
    )


def _chunk_sources(
    tenant_id: int, assemblies: list[ContextAssembly]
) -> dict[int, tuple[int | None, str]]:
    """chunk id -> (item seq, document title) of the passages the turns retrieved."""
    ids = {
        c.get("chunk")
        for a in assemblies
        for b in a.blocks
        if b.get("kind") == "retrieved"
        for c in b.get("chunks", ())
    } - {None}
    rows = ContextChunk.objects.filter(tenant_id=tenant_id, pk__in=ids).select_related("document")
    return {
        row.pk: (
            row.item_seq,
            (row.document.title or row.document.public_id) if row.document is not None else "",
        )
        for row in rows.only("pk", "item_seq", "document__title", "document__public_id")
    }


def _block(raw: dict, assembly: ContextAssembly, sources: dict) -> BlockView:
    kind = raw.get("kind", "")
    tokens = int(raw.get("tokens") or 0)
    seqs = raw.get("seqs") or []
    if kind == "input":
        # Numbered when the turn began; stored from `first_new_seq` once it succeeded.
        seqs = range(assembly.first_new_seq, assembly.first_new_seq + len(seqs))
    return BlockView(
        kind=kind,
        label=BLOCK_LABELS.get(kind, kind.capitalize()),
        tokens=tokens,
        share=_pct(tokens, assembly.total_tokens),
        spans=spans(seqs),
        text=raw.get("text") or "",
        chunks=[
            ChunkView(
                id=c.get("chunk"),
                score=float(c.get("score") or 0),
                tokens=int(c.get("tokens") or 0),
                text=c.get("text") or "",
                item_seq=sources.get(c.get("chunk"), (None, ""))[0],
                document=sources.get(c.get("chunk"), (None, ""))[1],
            )
            for c in raw.get("chunks") or ()
        ],
    )


def _turn(number: int, assembly: ContextAssembly, items, sources, strategy: str) -> TurnView:
    blocks = [_block(raw, assembly, sources) for raw in assembly.blocks]
    sent = spans(s for b in blocks if b.kind in ("history", "pinned") for s in _seqs(b.spans))
    saved = assembly.tokens_without_strategy - assembly.total_tokens
    return TurnView(
        number=number,
        assembly=assembly,
        items=items,
        blocks=blocks,
        left_out=_gaps(sent, assembly.first_new_seq),
        overhead=assembly.total_tokens - sum(b.tokens for b in blocks),
        budget_pct=_pct(assembly.total_tokens, assembly.budget) if assembly.budget else None,
        saved=saved,
        saved_pct=_pct(saved, assembly.tokens_without_strategy),
        searchable="retrieve" in strategy,
    )


def _seqs(found: list[Span]):
    for s in found:
        yield from range(s.first, s.last + 1)


def _gaps(sent: list[Span], end: int) -> list[Span]:
    """The seqs before `end` that `sent` (sorted, disjoint) does not cover."""
    out, start = [], 0
    for s in sent:
        if s.first > start:
            out.append(Span(start, min(s.first, end) - 1))
        start = max(start, s.last + 1)
        if start >= end:
            break
    if start < end:
        out.append(Span(start, end - 1))
    return [s for s in out if s.first <= s.last]


def inspect(*, conversation: Conversation) -> Inspection:
    """The conversation's items grouped by turn, each with what it sent upstream."""
    rows = list(ConversationItem.objects.filter(conversation=conversation).order_by("seq"))
    items = [_item(row) for row in rows]
    assemblies = list(
        ContextAssembly.objects.filter(conversation=conversation).order_by(
            "first_new_seq", "created_at", "pk"
        )
    )
    sources = _chunk_sources(conversation.tenant_id, assemblies)
    seqs = [i.seq for i in items]
    # Where each turn's items begin in `items`; a turn runs up to where the next one begins.
    cuts = [bisect_left(seqs, a.first_new_seq) for a in assemblies] + [len(items)]
    turns = [
        _turn(n + 1, assembly, items[cuts[n] : cuts[n + 1]], sources, conversation.strategy)
        for n, assembly in enumerate(assemblies)
    ]
    opening = items[: cuts[0]]
    sent = sum(a.total_tokens for a in assemblies)
    without = sum(a.tokens_without_strategy for a in assemblies)
    return Inspection(
        conversation=conversation,
        items=len(items),
        tokens=sum(i.tokens for i in items),
        before=TurnView(0, None, opening) if opening else None,
        turns=turns,
        sent=sent,
        without=without,
        saved=without - sent,
        saved_pct=_pct(without - sent, without),
    )

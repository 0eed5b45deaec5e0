"""Conversations in the database: what a turn reads and writes. Sync functions, called from
the hot path through `sync_to_async`; every read is scoped by the caller's tenant, so another
tenant's id is simply not found."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from gateway.context import messages as stored
from gateway.context.assemble import Item
from gateway.models import (
    ContextAssembly,
    Conversation,
    ConversationItem,
    StoredResponse,
)
from gateway.schemas import Message


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


_retention: dict[int, tuple[float, int]] = {}  # tenant -> (read at, days): read once a minute


def _expiry(tenant_id: int):
    from portal.models import Tenant

    read_at, days = _retention.get(tenant_id, (-60.0, 30))
    if time.monotonic() - read_at > 60:
        found = (
            Tenant.objects.filter(pk=tenant_id)
            .values_list("conversation_retention_days", flat=True)
            .first()
        )
        days = 30 if found is None else found
        _retention[tenant_id] = (time.monotonic(), days)
    return timezone.now() + timedelta(days=days)


def create(
    tenant_id: int,
    api_key_id: int | None,
    strategy: str,
    summarizer_model: str = "",
    metadata: dict | None = None,
    items: tuple[Message, ...] = (),
) -> Conversation:
    with transaction.atomic():
        conversation = Conversation.objects.create(
            public_id=new_id("conv"),
            tenant_id=tenant_id,
            api_key_id=api_key_id,
            strategy=strategy,
            summarizer_model=summarizer_model,
            metadata=metadata or {},
            expires_at=_expiry(tenant_id),
        )
        if items:
            append(conversation.pk, items)
    conversation.refresh_from_db()
    return conversation


def find(tenant_id: int, public_id: str) -> Conversation | None:
    return (
        Conversation.objects.filter(tenant_id=tenant_id, public_id=public_id)
        .exclude(expires_at__lt=timezone.now())
        .first()
    )


def window_items(conversation_id: int, window_from: int, since: int = 0) -> tuple[list[Item], int]:
    """Items from `since` on that are pinned or in the window (from `window_from`), and the
    tokens of all items from `since` on: older items outside the window are never read."""
    rows = ConversationItem.objects.filter(conversation_id=conversation_id, seq__gte=since)
    wanted = rows.filter(Q(seq__gte=window_from) | Q(pinned=True)).order_by("seq")
    items = [
        Item(seq, stored.from_json(message), tokens, pinned)
        for seq, message, tokens, pinned in wanted.values_list("seq", "message", "tokens", "pinned")
    ]
    if since >= window_from:  # every row from `since` on was read: no second query
        return items, sum(item.tokens for item in items)
    total = rows.aggregate(total=Sum("tokens"))["total"] or 0
    return items, total


def item_rows(conversation_id: int, first: int = 0, before: int | None = None) -> list:
    rows = ConversationItem.objects.filter(conversation_id=conversation_id, seq__gte=first)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return list(rows.order_by("seq"))


def append(
    conversation_id: int,
    new: tuple[Message, ...],
    response_id: str = "",
    pinned: bool = False,
    ids: tuple[str | None, ...] = (),
) -> list[ConversationItem]:
    """Items go to the end whatever else is appending: the row lock orders concurrent turns.
    `ids` names items where the client already saw their ids (a streamed answer)."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        rows = [
            ConversationItem(
                conversation=conversation,
                seq=conversation.next_seq + n,
                public_id=(ids[n] if n < len(ids) and ids[n] else None)
                or new_id("fc" if message.tool_calls and not message.text else "msg"),
                message=stored.to_json(message),
                tokens=stored.count(message),
                pinned=pinned,
                response_id=response_id,
            )
            for n, message in enumerate(new)
        ]
        ConversationItem.objects.bulk_create(rows)
        conversation.next_seq += len(rows)
        conversation.expires_at = _expiry(conversation.tenant_id)
        conversation.save(update_fields=["next_seq", "expires_at", "updated_at"])
    return rows


def record_turn(
    conversation_id: int,
    inputs: tuple[Message, ...],
    outputs: tuple[Message, ...],
    output_id: str | None,
    response_id: str,
    assembly: dict,
) -> tuple[int, int, int]:
    """A turn's input and answer, and what it sent upstream, in one transaction; returns
    (first input seq, first output seq, next seq)."""
    with transaction.atomic():
        rows = append(
            conversation_id, inputs + outputs, response_id,
            ids=(None,) * len(inputs) + (output_id,),
        )  # fmt: skip
        first_in = rows[0].seq
        first_out = first_in + len(inputs)
        ContextAssembly.objects.create(
            conversation_id=conversation_id, first_new_seq=first_in, **assembly
        )
    return first_in, first_out, first_in + len(rows)


def move_window(conversation_id: int, start: int, summary: str | None, summary_tokens: int) -> None:
    fields: dict[str, object] = {"window_from": start}
    if summary is not None:
        fields |= {"summary": summary, "summary_tokens": summary_tokens}
    Conversation.objects.filter(pk=conversation_id).update(**fields)


def fork(conversation: Conversation, upto: int) -> Conversation:
    """A new conversation holding the first `upto` items: a response continued from an
    earlier point than the conversation's end."""
    with transaction.atomic():
        copy = Conversation.objects.create(
            public_id=new_id("conv"),
            tenant_id=conversation.tenant_id,
            api_key_id=conversation.api_key_id,
            strategy=conversation.strategy,
            summarizer_model=conversation.summarizer_model,
            window_from=min(conversation.window_from, upto),
            summary=conversation.summary if conversation.window_from <= upto else "",
            summary_tokens=conversation.summary_tokens if conversation.window_from <= upto else 0,
            next_seq=upto,
            metadata=conversation.metadata,
            expires_at=_expiry(conversation.tenant_id),
        )
        rows = ConversationItem.objects.filter(conversation=conversation, seq__lt=upto)
        ConversationItem.objects.bulk_create(
            [
                ConversationItem(
                    conversation=copy,
                    seq=row.seq,
                    public_id=row.public_id,
                    message=row.message,
                    tokens=row.tokens,
                    pinned=row.pinned,
                    response_id=row.response_id,
                )
                for row in rows
            ]
        )
    return copy


def response(tenant_id: int, public_id: str) -> StoredResponse | None:
    return (
        StoredResponse.objects.select_related("conversation")
        .filter(tenant_id=tenant_id, public_id=public_id)
        .exclude(conversation__expires_at__lt=timezone.now())
        .first()
    )


def save_response(
    public_id: str, conversation_id: int, input_from: int, output_from: int, upto: int, body: dict
) -> None:
    conversation = Conversation.objects.get(pk=conversation_id)
    StoredResponse.objects.create(
        public_id=public_id,
        tenant_id=conversation.tenant_id,
        conversation=conversation,
        input_from=input_from,
        output_from=output_from,
        upto=upto,
        body=body,
    )


def save_assembly(conversation_id: int, **fields) -> None:
    ContextAssembly.objects.create(conversation_id=conversation_id, **fields)


def purge_expired() -> int:
    """Retention: conversations unused past their tenant's retention go, with all they hold."""
    removed, _ = Conversation.objects.filter(expires_at__lt=timezone.now()).delete()
    return removed

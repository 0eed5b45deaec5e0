"""Retrieval: passages of evicted turns and of attached documents, embedded once, and the ones
nearest the new input placed in a marked block while they fit its allowance."""

from __future__ import annotations

import re

from asgiref.sync import sync_to_async
from django.db.models import Q

from gateway.cache import embedder
from gateway.context.assemble import Item
from gateway.context.messages import count_text
from gateway.models import ContextChunk, ContextDocument

CHUNK_WORDS = 120
TOP_K = 8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def chunk(text: str) -> list[str]:
    """Passages of about CHUNK_WORDS words, cut at sentence ends where possible."""
    passages, current, words = [], [], 0
    for sentence in _SENTENCE.split(text.strip()):
        size = len(sentence.split())
        if current and words + size > CHUNK_WORDS:
            passages.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += size
    if current:
        passages.append(" ".join(current))
    return [p for p in passages if p.strip()]


async def _vectors(texts: list[str]) -> list[bytes]:
    model = embedder.local()
    return [(await model.embed(text)).tobytes() for text in texts]


async def index_items(tenant_id: int, conversation_id: int, items: list[Item]) -> None:
    rows = []
    for item in items:
        role = item.message.role
        for passage in chunk(item.message.text):
            rows.append((item.seq, f"{role}: {passage}"))
    if not rows:
        return
    vectors = await _vectors([text for _, text in rows])
    await sync_to_async(ContextChunk.objects.bulk_create, thread_sensitive=False)(
        [
            ContextChunk(
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                item_seq=seq,
                text=text,
                tokens=count_text(text),
                vector=vector,
                embedding_model=embedder.LOCAL_MODEL,
            )
            for (seq, text), vector in zip(rows, vectors, strict=True)
        ]
    )


async def add_document(
    tenant_id: int, conversation_id: int | None, public_id: str, title: str, text: str
) -> ContextDocument:
    passages = chunk(text)
    vectors = await _vectors(passages)

    def store() -> ContextDocument:
        document = ContextDocument.objects.create(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            public_id=public_id,
            title=title,
            text=text,
        )
        ContextChunk.objects.bulk_create(
            ContextChunk(
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                document=document,
                text=passage,
                tokens=count_text(passage),
                vector=vector,
                embedding_model=embedder.LOCAL_MODEL,
            )
            for passage, vector in zip(passages, vectors, strict=True)
        )
        return document

    return await sync_to_async(store, thread_sensitive=False)()


def _candidates(tenant_id: int, conversation_id: int) -> list[tuple[int, str, int, bytes]]:
    mine = Q(conversation_id=conversation_id) | Q(conversation__isnull=True, document__isnull=False)
    rows = ContextChunk.objects.filter(mine, tenant_id=tenant_id)
    return list(rows.values_list("pk", "text", "tokens", "vector"))


async def search(tenant_id: int, conversation_id: int, query: str, allowance: int) -> list[dict]:
    """The passages nearest `query`, best first, while they fit `allowance` tokens."""
    import numpy as np

    rows = await sync_to_async(_candidates, thread_sensitive=False)(tenant_id, conversation_id)
    if not rows or not query.strip() or allowance <= 0:
        return []
    vector = await embedder.local().embed(query)
    matrix = np.stack([np.frombuffer(bytes(v), dtype=np.float32) for *_, v in rows])
    scores = matrix @ vector
    chosen, used = [], 0
    for index in np.argsort(-scores)[:TOP_K].tolist():
        pk, text, tokens, _ = rows[index]
        if used + tokens > allowance:
            continue
        chosen.append({"chunk": pk, "text": text, "tokens": tokens, "score": float(scores[index])})
        used += tokens
    return chosen

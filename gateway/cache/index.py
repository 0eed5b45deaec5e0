"""This process's mirror of one semantic partition: a faiss index over the partition's log.

Each lookup first reads what was logged since the last read (one Redis call, usually empty),
so every gateway process finds what any of them stored. Items the log has dropped (evicted,
expired, purged) leave the mirror at the next read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.cache.store import CacheStore, LogId, LogItem

if TYPE_CHECKING:  # imported on first use: a gateway without semantic caching never loads them
    import faiss
    import numpy as np


@dataclass(frozen=True, slots=True)
class Candidate:
    similarity: float
    entry_key: str
    text: str
    label: int


class Mirror:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._index: faiss.IndexIDMap2 | None = None
        self._items: dict[int, LogItem] = {}
        self._order: deque[tuple[LogId, int]] = deque()
        self._last: LogId | None = None
        self._next_label = 0

    def __len__(self) -> int:
        return len(self._items)

    def apply(self, items: list[LogItem], oldest: LogId | None) -> None:
        while self._order and (oldest is None or self._order[0][0] < oldest):
            self.forget(self._order.popleft()[1])
        if oldest is None:
            self._last = None  # the log is gone: a new one starts from scratch
        if not items:
            return
        import numpy as np

        vectors = np.stack([np.frombuffer(item.vector, dtype=np.float32) for item in items])
        if self._index is None or self._index.d != vectors.shape[1]:
            self._reset(vectors.shape[1])
        labels = np.arange(self._next_label, self._next_label + len(items), dtype=np.int64)
        self._next_label += len(items)
        self._index.add_with_ids(vectors, labels)
        for label, item in zip(labels.tolist(), items, strict=True):
            self._items[label] = item
            self._order.append((item.log_id, label))
        self._last = items[-1].log_id

    def _reset(self, dimensions: int) -> None:
        import faiss

        # An exact scan: at the 10,000 entries a partition holds by default it takes well under
        # a millisecond, never misses a neighbour, and removes entries cheaply.
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimensions))  # vectors are normalised
        self._items.clear()
        self._order.clear()

    @property
    def last(self) -> LogId | None:
        return self._last

    def search(self, vector: np.ndarray, threshold: float, count: int = 8) -> list[Candidate]:
        if self._index is None or not self._items or self._index.d != vector.shape[0]:
            return []
        scores, labels = self._index.search(vector.reshape(1, -1), min(count, len(self._items)))
        found = []
        for label, similarity in zip(labels[0].tolist(), scores[0].tolist(), strict=True):
            item = self._items.get(label)
            if item is not None and similarity >= threshold:
                found.append(Candidate(similarity, item.entry_key, item.text, label))
        return found

    def forget(self, label: int) -> None:
        if self._items.pop(label, None) is not None and self._index is not None:
            import numpy as np

            self._index.remove_ids(np.array([label], dtype=np.int64))


class Mirrors:
    """The partitions this process has looked at lately, least recently used dropped first."""

    def __init__(self, max_partitions: int) -> None:
        self._max = max_partitions
        self._mirrors: OrderedDict[str, Mirror] = OrderedDict()

    async def synced(self, store: CacheStore, log: str) -> Mirror:
        mirror = self._mirrors.get(log)
        if mirror is None:
            mirror = self._mirrors[log] = Mirror()
            while len(self._mirrors) > self._max:
                self._mirrors.popitem(last=False)
        self._mirrors.move_to_end(log)
        async with mirror.lock:  # concurrent lookups read each new item once
            items, oldest = await store.read_log(log, mirror.last)
            mirror.apply(items, oldest)
        return mirror

    def clear(self) -> None:
        self._mirrors.clear()

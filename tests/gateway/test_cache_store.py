"""Both cache stores keep the same promises: TTLs, a bounded log per partition whose dropped
items take their entries with them, reads of only what is new, and purges per tenant.
The Redis store runs against the real Redis; the memory store is the embedded mode's."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from django.conf import settings

from gateway.cache.index import Mirror
from gateway.cache.store import MemoryCacheStore, RedisCacheStore


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return MemoryCacheStore(max_items=100)
    return RedisCacheStore(settings.REDIS_URL)


@pytest.fixture
def prefix(store):
    name = f"wsc-store-test-{uuid.uuid4().hex[:8]}:"
    yield name
    asyncio.run(store.purge(name))


def vector(seed: int) -> bytes:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return (v / np.linalg.norm(v)).tobytes()


def test_entries_expire_after_their_ttl(store, prefix):
    async def scenario():
        await store.put(prefix + "a", b"A", ttl=1)
        assert await store.get_many([prefix + "a", prefix + "b"]) == [b"A", None]
        await asyncio.sleep(1.2)
        assert await store.get_many([prefix + "a"]) == [None]

    asyncio.run(scenario())


def test_a_log_keeps_its_newest_items_and_drops_the_others_entries(store, prefix):
    log = prefix + "l:p"

    async def scenario():
        for n in range(5):
            await store.append(log, f"{prefix}e:{n}", vector(n), f"q{n}", b"v%d" % n, 60, cap=3)
        items, oldest = await store.read_log(log, None)
        assert [i.text for i in items] == ["q2", "q3", "q4"]
        assert oldest == items[0].log_id
        entries = await store.get_many([f"{prefix}e:{n}" for n in range(5)])
        assert entries == [None, None, b"v2", b"v3", b"v4"]
        newer, _ = await store.read_log(log, items[1].log_id)
        assert [i.text for i in newer] == ["q4"]

    asyncio.run(scenario())


def test_a_purge_removes_only_its_prefix(store, prefix):
    other = prefix.rstrip(":") + "-other:"

    async def scenario():
        await store.put(prefix + "x", b"1", 60)
        await store.append(prefix + "l:p", prefix + "e:1", vector(1), "q", b"v", 60, cap=10)
        await store.put(other + "x", b"2", 60)
        assert await store.purge(prefix) >= 2
        assert await store.get_many([prefix + "x", prefix + "e:1", other + "x"]) == [
            None,
            None,
            b"2",
        ]
        assert await store.read_log(prefix + "l:p", None) == ([], None)
        await store.purge(other)

    asyncio.run(scenario())


def test_a_mirror_follows_its_log_and_finds_the_nearest(store, prefix):
    log = prefix + "l:m"
    mirror = Mirror()

    async def sync():
        items, oldest = await store.read_log(log, mirror.last)
        mirror.apply(items, oldest)

    async def scenario():
        for n in range(4):
            await store.append(log, f"{prefix}e:{n}", vector(n), f"q{n}", b"v", 60, cap=3)
        await sync()
        assert len(mirror) == 3
        query = np.frombuffer(vector(3), dtype=np.float32)
        [best, *_] = mirror.search(query, threshold=0.0)
        assert best.text == "q3" and best.similarity == pytest.approx(1.0, abs=1e-5)
        assert not mirror.search(np.frombuffer(vector(0), dtype=np.float32), threshold=0.999)
        await store.purge(prefix)  # the log is gone: so is everything mirrored from it
        await sync()
        assert len(mirror) == 0 and mirror.search(query, threshold=0.0) == []

    asyncio.run(scenario())


def test_the_memory_store_is_bounded_overall():
    store = MemoryCacheStore(max_items=4)

    async def scenario():
        for n in range(6):
            await store.put(f"k{n}", b"v", 60)
        for n in range(6):
            await store.append(f"log{n}", f"e{n}", vector(n), "q", b"v", 60, cap=10)
        kept = await store.get_many([f"k{n}" for n in range(6)] + [f"e{n}" for n in range(6)])
        assert sum(v is not None for v in kept) <= 4
        assert sum([len((await store.read_log(f"log{n}", None))[0]) for n in range(6)]) <= 4

    asyncio.run(scenario())

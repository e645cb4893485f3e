"""The serving layer's trending cache (serving/trending_cache.py) on a real memory store.

Time is a fake clock for ages (fresh / stale), and real event-loop deadlines only as upper bounds:
nothing here asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from features.base import StoreEvent
from features.memory import MemoryStore
from serving.trending_cache import STORE_TIMEOUT, STORE_UNAVAILABLE, TrendingCache
from tests.store_doubles import TrendingStore

LONG = 30.0
"""A deadline no healthy read comes near (seconds from now)."""


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def deadline(seconds: float = LONG) -> float:
    return asyncio.get_running_loop().time() + seconds


async def buy(store: MemoryStore, item: int, users: int = 1) -> None:
    await store.record_events(
        [StoreEvent(ts=time.time(), user_id=u, item_id=item, action="buy") for u in range(users)]
    )


@pytest.fixture
def store() -> TrendingStore:
    return TrendingStore()


async def test_reads_within_ttl_share_one_store_read(store: TrendingStore) -> None:
    await buy(store, 7)
    clock = Clock()
    cache = TrendingCache(ttl_s=1.0, clock=clock)
    assert cache.fresh(store, 5) is None
    first = await cache.read(store, 5, deadline())
    assert first.failure is None and [i for i, _ in first.items] == [7]
    await buy(store, 8, users=3)
    clock.t += 0.9
    assert cache.fresh(store, 5) == first.items
    assert (await cache.read(store, 5, deadline())).items == first.items  # not the new purchases yet
    assert store.reads == 1 and cache.refreshes == 1


async def test_expired_value_is_read_again(store: TrendingStore) -> None:
    await buy(store, 7)
    clock = Clock()
    cache = TrendingCache(ttl_s=1.0, clock=clock)
    await cache.read(store, 5, deadline())
    await buy(store, 8, users=3)
    clock.t += 1.0
    assert cache.fresh(store, 5) is None
    again = await cache.read(store, 5, deadline())
    assert [i for i, _ in again.items] == [8, 7] and store.reads == 2
    assert cache.fresh(store, 5) == again.items


async def test_concurrent_misses_wait_for_one_refresh(store: TrendingStore) -> None:
    await buy(store, 7)
    store.gate = asyncio.Event()
    cache = TrendingCache(ttl_s=1.0, clock=Clock())
    waiting = [asyncio.ensure_future(cache.read(store, 5, deadline())) for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    store.gate.set()
    reads = await asyncio.gather(*waiting)
    assert store.reads == 1 and cache.refreshes == 1
    assert all(r.failure is None and [i for i, _ in r.items] == [7] for r in reads)


async def test_a_waiter_giving_up_does_not_cancel_the_shared_refresh(store: TrendingStore) -> None:
    await buy(store, 7)
    store.gate = asyncio.Event()
    cache = TrendingCache(ttl_s=1.0, clock=Clock())
    patient = asyncio.ensure_future(cache.read(store, 5, deadline()))  # starts the refresh
    await asyncio.sleep(0)
    hasty = await cache.read(store, 5, deadline(0.01))
    assert hasty.failure == STORE_TIMEOUT and hasty.items == []
    store.gate.set()
    got = await patient
    assert got.failure is None and [i for i, _ in got.items] == [7] and store.reads == 1


@pytest.mark.parametrize("how", ["down", "hang"])
async def test_failure_without_a_value_is_reported_and_empty(store: TrendingStore, how: str) -> None:
    setattr(store, how, True)
    cache = TrendingCache(ttl_s=1.0, stale_s=60.0, clock=Clock())
    got = await cache.read(store, 5, deadline(0.05))
    assert got.items == []
    assert got.failure == (STORE_UNAVAILABLE if how == "down" else STORE_TIMEOUT)
    assert got.detail


async def test_a_refresh_failing_after_its_waiters_gave_up_is_not_an_unretrieved_error(
    store: TrendingStore,
) -> None:
    store.hang = True
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        cache = TrendingCache(ttl_s=1.0, clock=Clock())
        assert (await cache.read(store, 5, deadline(0.02))).failure == STORE_TIMEOUT
        await asyncio.sleep(0.1)  # the refresh's own timeout fires after the waiter's
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert errors == []


@pytest.mark.parametrize("how", ["down", "hang"])
async def test_stale_value_serves_a_failed_refresh_within_stale_s(store: TrendingStore, how: str) -> None:
    await buy(store, 7)
    clock = Clock()
    cache = TrendingCache(ttl_s=1.0, stale_s=60.0, clock=clock)
    good = (await cache.read(store, 5, deadline())).items
    setattr(store, how, True)
    clock.t += 59.0
    stale = await cache.read(store, 5, deadline(0.05))
    assert stale.items == good  # used for the page ...
    assert stale.failure == (STORE_UNAVAILABLE if how == "down" else STORE_TIMEOUT)  # ... still degraded
    clock.t += 1.0  # 60 s old: too stale
    too_old = await cache.read(store, 5, deadline(0.05))
    assert too_old.items == [] and too_old.failure == stale.failure
    setattr(store, how, False)
    await buy(store, 8, users=3)
    recovered = await cache.read(store, 5, deadline())  # a healthy refresh replaces the stale list
    assert recovered.failure is None and [i for i, _ in recovered.items] == [8, 7]


async def test_stale_s_zero_never_serves_a_stale_value(store: TrendingStore) -> None:
    await buy(store, 7)
    clock = Clock()
    cache = TrendingCache(ttl_s=1.0, stale_s=0.0, clock=clock)
    await cache.read(store, 5, deadline())
    store.down = True
    clock.t += 1.0
    got = await cache.read(store, 5, deadline())
    assert got.items == [] and got.failure == STORE_UNAVAILABLE


async def test_ttl_zero_reads_the_store_every_time(store: TrendingStore) -> None:
    cache = TrendingCache(ttl_s=0.0, stale_s=60.0, clock=Clock())
    await buy(store, 7)
    assert [i for i, _ in (await cache.read(store, 5, deadline())).items] == [7]
    assert cache.fresh(store, 5) is None
    await buy(store, 8, users=3)
    assert [i for i, _ in (await cache.read(store, 5, deadline())).items] == [8, 7]
    store.down = True
    down = await cache.read(store, 5, deadline())
    assert down.items == [] and down.failure == STORE_UNAVAILABLE  # nothing kept to be stale
    assert store.reads == 3 and cache.refreshes == 0


async def test_another_store_or_k_starts_over(store: TrendingStore) -> None:
    await buy(store, 7)
    other = TrendingStore()
    await buy(other, 9)
    cache = TrendingCache(ttl_s=1.0, stale_s=60.0, clock=Clock())
    assert [i for i, _ in (await cache.read(store, 5, deadline())).items] == [7]
    assert cache.fresh(other, 5) is None and cache.fresh(store, 4) is None
    assert [i for i, _ in (await cache.read(other, 5, deadline())).items] == [9]
    other.down = True
    store.down = True
    assert (await cache.read(store, 5, deadline())).items == []  # never other's list, even stale
    assert (await cache.read(store, 0, deadline())).items == []  # k = 0 reads nothing


async def test_close_cancels_a_running_refresh(store: TrendingStore) -> None:
    store.hang = True
    cache = TrendingCache(ttl_s=1.0, clock=Clock())
    waiter = asyncio.ensure_future(cache.read(store, 5, deadline()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    cache.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter

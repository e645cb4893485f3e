"""Trending items for the feed, read from the store at most once every ``ttl_s`` seconds.

Why: trending is the same list for every user, yet each feed request read it from the store (one
Redis round trip and ``trending_k`` members to parse). Here one read serves every request of the
process for ``ttl_s`` seconds (``Settings.trending_cache_s``); trending decays with a half-life of a
day, so a list a second old is the same list.

The rules, per process and per store:

- **Fresh hit**: a value younger than ``ttl_s`` is returned at once (:meth:`TrendingCache.fresh`, no
  await, no task).
- **Refresh**: otherwise ONE refresh runs at a time; requests arriving meanwhile wait for that same
  read instead of starting their own. The refresh is bounded by the deadline of the request that
  started it (``Settings.request_deadline_s``), and every waiter stops waiting at its own deadline.
  A waiter giving up (or being cancelled) does not cancel the shared refresh.
- **Failure**: when the refresh fails (:class:`~features.errors.StoreUnavailable`) or is not done by
  the waiter's deadline, the read reports it (``store_unavailable`` / ``store_timeout``) and the feed
  is flagged degraded exactly as without the cache. The page then uses the last good value if it is
  younger than ``stale_s`` (``Settings.trending_stale_s``), else none (the ranker falls back to the
  run's popularity). Why stale is allowed: a trending list a minute old is nearly today's list and far
  closer to it than the run's popularity; and the page is still flagged degraded, so the degraded
  rate keeps measuring the store's health. ``stale_s = 0`` never serves a stale value.
- **Off**: ``ttl_s = 0`` caches nothing: each request reads the store itself, as before the cache
  (no sharing, nothing stale).
- The cache belongs to one store and one ``k``: asked about another (tests swap the store per request
  with ``dependency_overrides``), it starts over empty.

Any other exception from the store is a bug and propagates to every waiter (the feed answers 500).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from features.base import FeatureStore
from features.errors import StoreUnavailable

Trending = list[tuple[int, float]]

STORE_UNAVAILABLE = "store_unavailable"
STORE_TIMEOUT = "store_timeout"


@dataclass(frozen=True)
class TrendingRead:
    items: Trending
    """The list to rank with: fresh, else a stale one allowed by ``stale_s``, else empty."""
    failure: str | None = None
    """``store_unavailable`` or ``store_timeout`` when the store did not deliver for this request."""
    detail: str = ""
    """What went wrong (for the log), when ``failure`` is set."""


class TrendingCache:
    """One process's cached trending list (see the module docstring for the rules)."""

    def __init__(
        self, ttl_s: float, stale_s: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self._clock = clock
        self._store: FeatureStore | None = None
        self._k = 0
        self._items: Trending | None = None
        self._read_at = 0.0
        self._refresh: asyncio.Task[Trending] | None = None
        self.refreshes = 0
        """Store reads started by the cache (for tests and debugging)."""

    def fresh(self, store: FeatureStore, k: int) -> Trending | None:
        """The cached list if it is younger than ``ttl_s`` and belongs to this store and ``k``."""
        if (
            self._items is not None
            and self._store is store
            and self._k == k
            and self._clock() - self._read_at < self.ttl_s
        ):
            return self._items
        return None

    async def read(self, store: FeatureStore, k: int, deadline: float) -> TrendingRead:
        """Top-``k`` trending of ``store``; never waits past ``deadline`` (event-loop time)."""
        if k <= 0:
            return TrendingRead([])
        if self.ttl_s <= 0:
            return await self._uncached(store, k, deadline)
        hit = self.fresh(store, k)
        if hit is not None:
            return TrendingRead(hit)
        if self._store is not store or self._k != k:
            self._forget()
            self._store, self._k = store, k
        refresh = self._refresh
        if refresh is None:
            refresh = self._refresh = asyncio.ensure_future(self._read_store(store, k, deadline))
            refresh.add_done_callback(self._refresh_done)
        try:
            async with asyncio.timeout_at(deadline):
                return TrendingRead(await asyncio.shield(refresh))
        except StoreUnavailable as exc:
            return self._fallback(STORE_UNAVAILABLE, str(exc))
        except TimeoutError:
            return self._fallback(STORE_TIMEOUT, "not read by the request deadline")

    async def _read_store(self, store: FeatureStore, k: int, deadline: float) -> Trending:
        self.refreshes += 1
        async with asyncio.timeout_at(deadline):
            items = await store.trending(k)
        if self._store is store and self._k == k:
            self._items, self._read_at = items, self._clock()
        return items

    def _refresh_done(self, task: asyncio.Task[Trending]) -> None:
        if self._refresh is task:
            self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up already (asyncio would warn)

    async def _uncached(self, store: FeatureStore, k: int, deadline: float) -> TrendingRead:
        try:
            async with asyncio.timeout_at(deadline):
                return TrendingRead(await store.trending(k))
        except StoreUnavailable as exc:
            return TrendingRead([], STORE_UNAVAILABLE, str(exc))
        except TimeoutError:
            return TrendingRead([], STORE_TIMEOUT, "not read by the request deadline")

    def _fallback(self, failure: str, detail: str) -> TrendingRead:
        """The failed read's answer: the last good value while it is younger than ``stale_s``."""
        if self._items is not None and self._clock() - self._read_at < self.stale_s:
            return TrendingRead(self._items, failure, detail + " (using the last good list)")
        return TrendingRead([], failure, detail)

    def _forget(self) -> None:
        """Drop the value and stop waiting on a refresh of another store (it finishes on its own)."""
        self._items = None
        self._read_at = 0.0
        self._refresh = None

    def close(self) -> None:
        """Cancel a refresh still running (at shutdown, so no task outlives the event loop)."""
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None

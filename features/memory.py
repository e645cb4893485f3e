"""``memory://``: the embedded default store, for the demo, tests and single-process serving.

It keeps exactly what the Redis backend keeps (same sorted sets, same key names, same bounds,
same expiry; see :mod:`features.layout`) in plain dicts, so both obey one contract test suite.
No method awaits, so each call is atomic within one event loop; a lock also makes it safe to share
across threads. Memory is bounded by the per-key limits and by expiring idle keys.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence

from features.base import StoreEvent, UserState
from features.decay import DecayClock
from features.errors import StoreDataLost
from features.layout import (
    assemble,
    layout_of,
    merge_top,
    plan_writes,
    raw_user_read,
    user_read_keys,
    validate_events,
)
from features.options import StoreOptions

SWEEP_EVERY_WRITES = 10_000
"""Scan for expired keys after this many key writes (reads also skip expired keys)."""

LAZY_TRIM_ABOVE = 1000
"""Keys bounded above this many members (trending) may overshoot by a quarter before being cut back
to the bound, so a batch does not sort 10,000 items; per-user keys are trimmed exactly, as on Redis."""


def _rank_key(item: tuple[int, float]) -> tuple[float, str]:
    # Redis orders equal scores by the member's bytes: the decimal string of the id.
    return item[1], str(item[0])


class MemoryStore:
    def __init__(
        self,
        url: str = "memory://",
        options: StoreOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.options = options or StoreOptions()
        self._keys = layout_of(self.options)
        self._affinity_clock = DecayClock(self.options.affinity_half_life_s)
        self._trend_clock = DecayClock(self.options.trending_half_life_s)
        self._clock = clock
        self._zsets: dict[str, dict[int, float]] = {}
        self._expires: dict[str, float] = {}
        self._announced: dict[str, str] = {}
        self._log_positions: dict[int, int] = {}
        self._writes_since_sweep = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r}, prefix={self.options.prefix!r}, keys={len(self._zsets)})"

    # -- writes ----------------------------------------------------------------------------------
    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        if not events:
            return
        plan = plan_writes(events, self.options)
        wall = self._clock()
        with self._lock:
            for key, members in plan.latest.items():
                zset = self._live(key, wall, create=True)
                for member, ts in members.items():
                    old = zset.get(member)
                    if old is None or ts > old:
                        zset[member] = ts
            for key, members in plan.incr.items():
                zset = self._live(key, wall, create=True)
                for member, amount in members.items():
                    zset[member] = zset.get(member, 0.0) + amount
            for key, limit in plan.limits.items():
                zset = self._zsets[key]
                slack = limit // 4 if limit > LAZY_TRIM_ABOVE else 0
                if len(zset) > limit + slack:
                    self._zsets[key] = dict(heapq.nlargest(limit, zset.items(), key=_rank_key))
            for key, ttl in plan.ttls.items():
                self._expires[key] = wall + ttl
            self._writes_since_sweep += len(plan.ttls)
            if self._writes_since_sweep >= SWEEP_EVERY_WRITES:
                self._sweep(wall)

    def _live(self, key: str, wall: float, create: bool = False) -> dict[int, float]:
        """The sorted set at ``key`` unless it expired (then it is dropped)."""
        expires = self._expires.get(key)
        if expires is not None and expires <= wall:
            self._zsets.pop(key, None)
            self._expires.pop(key, None)
        zset = self._zsets.get(key)
        if zset is None:
            zset = {}
            if create:
                self._zsets[key] = zset
        return zset

    def _sweep(self, wall: float) -> None:
        for key in [k for k, exp in self._expires.items() if exp <= wall]:
            self._zsets.pop(key, None)
            self._expires.pop(key, None)
        self._writes_since_sweep = 0

    def _newest_first(self, key: str, wall: float, limit: int | None = None) -> list[tuple[int, float]]:
        zset = self._live(key, wall)
        if limit is not None and limit < len(zset):
            return heapq.nlargest(limit, zset.items(), key=_rank_key)
        return sorted(zset.items(), key=_rank_key, reverse=True)

    # -- reads -----------------------------------------------------------------------------------
    async def user_state(self, user_id: int, now: float | None = None) -> UserState:
        return (await self.user_states([user_id], now))[0]

    async def user_states(self, user_ids: Sequence[int], now: float | None = None) -> list[UserState]:
        wall = self._clock()
        gen, factor = self._affinity_clock.reader(wall if now is None else now)
        with self._lock:
            return [self._read_user(uid, gen, factor, wall) for uid in user_ids]

    async def bought_by(self, user_ids: Sequence[int]) -> list[set[int]]:
        wall = self._clock()
        with self._lock:
            return [self._read_bought(uid, wall) for uid in user_ids]

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        wall = self._clock()
        gen, factor = self._affinity_clock.reader(wall if now is None else now)
        with self._lock:  # one snapshot, as one pipeline is on Redis
            return self._read_user(user_id, gen, factor, wall), [
                self._read_bought(f, wall) for f in friend_ids
            ]

    # -- read helpers (the caller holds the lock) --------------------------------------------------
    def _read_user(self, user_id: int, affinity_gen: int, affinity_factor: float, wall: float) -> UserState:
        keys = user_read_keys(self._keys, user_id, affinity_gen)
        ordered = [[m for m, _ in self._newest_first(k, wall)] for k in keys[:3]]
        unordered = [list(self._live(k, wall)) for k in keys[3:6]]  # read back as sets
        affinity = list(self._live(keys[6], wall).items())
        raw = raw_user_read(ordered + unordered, affinity)
        return assemble(raw, affinity_factor, self.options.recent_limit)

    def _read_bought(self, user_id: int, wall: float) -> set[int]:
        return set(self._live(self._keys.user(user_id, "buys"), wall))

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        wall = self._clock()
        gen, factor = self._trend_clock.reader(wall if now is None else now)
        with self._lock:
            parts = [
                self._newest_first(key, wall, k) for key in self._keys.trending_partitions(category, gen)
            ]
        top = parts[0] if len(parts) == 1 else merge_top(parts, k)
        return [(item, score * factor) for item, score in top]

    async def record_logged(
        self, log_id: int, batch: Sequence[tuple[int, StoreEvent]], rebuilding: bool = False
    ) -> None:
        if not batch:
            return
        validate_events([ev for _, ev in batch])
        held = self._log_positions.get(log_id)
        if held is None and not rebuilding:
            raise StoreDataLost(f"{self.url} holds no position of event log {log_id}; replay it")
        start = held or 0
        await self.record_events([ev for seq, ev in batch if seq > start])
        self._log_positions[log_id] = max(start, max(seq for seq, _ in batch))

    async def log_intact(self, log_id: int) -> bool:
        return log_id in self._log_positions

    async def seal_log(self, log_id: int, seq: int) -> None:
        self._log_positions.setdefault(log_id, seq)

    async def announce(self, name: str, value: str) -> None:
        self._announced[name] = value

    async def announced(self, name: str) -> str | None:
        return self._announced.get(name)

    # -- admin -----------------------------------------------------------------------------------
    async def ping(self) -> bool:
        return True

    async def clear(self) -> None:
        with self._lock:
            self._zsets.clear()
            self._expires.clear()
            self._log_positions.clear()

    async def close(self) -> None:
        return None

"""The FeatureStore protocol every backend implements, and the value types it returns.

The store is a cache of what users just did, rebuilt from the durable event log if lost. All
methods are async (the service is async); the memory backend simply does not await anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class StoreEvent:
    """One user action as the store sees it (the service converts API events into these)."""

    ts: float
    user_id: int
    item_id: int
    action: str  # one of recsys.schema.ACTION_NAMES
    kol_id: int | None = None
    post_id: int | None = None
    to_user_id: int | None = None
    category: str | None = None
    value: float = 0.0
    request_id: str | None = None


@dataclass
class UserState:
    """Recent activity of one user, newest first, bounded in length per list."""

    recent_clicks: list[int] = field(default_factory=list)
    recent_shares: list[int] = field(default_factory=list)
    recent_buys: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    bought: set[int] = field(default_factory=set)
    hidden_items: set[int] = field(default_factory=set)
    hidden_kols: set[int] = field(default_factory=set)
    kol_affinity: dict[int, float] = field(default_factory=dict)
    """Live, time-decayed engagement per KOL (positive actions add, hide subtracts)."""


@runtime_checkable
class FeatureStore(Protocol):
    url: str

    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        """Apply a batch atomically-enough (one pipeline on Redis); next reads reflect it."""
        ...

    async def user_state(self, user_id: int, now: float | None = None) -> UserState:
        """State of one user; unknown users get an empty state. ``kol_affinity`` is decayed to
        ``now`` (default: wall-clock time; pass the event clock in simulations)."""
        ...

    async def user_states(self, user_ids: Sequence[int], now: float | None = None) -> list[UserState]:
        """Batched read (one round trip on Redis), same order as ``user_ids``."""
        ...

    async def bought_by(self, user_ids: Sequence[int]) -> list[set[int]]:
        """The items each user bought (the ``bought`` set of their state), in one round trip: what
        "N friends bought this" needs, without reading the friends' whole state."""
        ...

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        """``user_state(user_id, now)`` and ``bought_by(friend_ids)`` in one read (one round trip on
        Redis): everything one feed request reads about a user. Both parts fail together."""
        ...

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (item_id, score) by time-decayed positive actions (overall or within a category),
        scores decayed to ``now`` (default: wall-clock time), best first."""
        ...

    async def record_logged(
        self, log_id: int, batch: Sequence[tuple[int, StoreEvent]], rebuilding: bool = False
    ) -> None:
        """Apply ``(seq, event)`` pairs of event log ``log_id`` EXACTLY ONCE: the store keeps, with
        the counters and atomically with them, the highest seq of each log it applied, and skips
        events at or below it. Raises :class:`~features.errors.StoreDataLost` (nothing applied where
        the loss is) when the store lost that position, unless ``rebuilding`` (then a missing position
        counts as 0: the log is being replayed from its start). See :mod:`features.logged_writes`."""
        ...

    async def log_intact(self, log_id: int) -> bool:
        """True when the store holds the position of log ``log_id`` everywhere it keeps one (it was
        sealed and nothing was lost since); False: the log must be replayed with ``rebuilding``."""
        ...

    async def seal_log(self, log_id: int, seq: int) -> None:
        """After replaying log ``log_id`` up to ``seq`` from its start: mark the store as holding it
        (every position still missing becomes ``seq``)."""
        ...

    async def announce(self, name: str, value: str) -> None:
        """Publish a small service-wide value under ``name`` (e.g. the served run), replacing the
        previous one; every process sharing the store reads it with :meth:`announced`."""
        ...

    async def announced(self, name: str) -> str | None:
        """The value last announced under ``name``; None if nothing was."""
        ...

    async def ping(self) -> bool: ...

    async def clear(self) -> None:
        """Drop every user and trending key this store holds (used by tests and `kolfeed store
        rebuild`); announcements stay (they are not derived from the event log)."""
        ...

    async def close(self) -> None: ...

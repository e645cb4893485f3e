"""Who opens the app when: the user sample, the sessions of each simulated day, and their batches.

Why batches: ranking is per request, but store reads/writes and ground-truth draws are cheap in bulk.
A batch holds sessions close in time with no user twice, so every session still sees the store as it
was after all of the user's earlier sessions (the property the production event path guarantees).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from recsys.simulate.config import SimConfig, SimulationError
from recsys.world.config import DAY


def sample_users(
    rng: np.random.Generator,
    n_world_users: int,
    n: int,
    mode: str,
    friend_indptr: np.ndarray,
    friend_indices: np.ndarray,
) -> np.ndarray:
    """``n`` distinct world users (sorted). ``cluster``: breadth-first along friendships from random
    seeds, so most simulated users have simulated friends; ``random``: uniform without replacement."""
    if n > n_world_users:
        raise SimulationError(f"--users {n} exceeds the world's {n_world_users} users")
    if mode == "random":
        return np.sort(rng.choice(n_world_users, size=n, replace=False)).astype(np.int64)
    if mode != "cluster":
        raise SimulationError(f"unknown sample mode {mode!r}; expected cluster or random")
    order = rng.permutation(n_world_users)
    taken = np.zeros(n_world_users, dtype=bool)
    chosen: list[int] = []
    seed_pos = 0
    frontier: list[int] = []
    while len(chosen) < n:
        if not frontier:
            while taken[order[seed_pos]]:
                seed_pos += 1
            start = int(order[seed_pos])
            taken[start] = True
            chosen.append(start)
            frontier = [start]
            continue
        nxt: list[int] = []
        for u in frontier:
            friends = friend_indices[friend_indptr[u] : friend_indptr[u + 1]]
            for f in rng.permutation(friends).tolist():
                if len(chosen) >= n:
                    break
                if not taken[f]:
                    taken[f] = True
                    chosen.append(f)
                    nxt.append(f)
        frontier = nxt
    return np.sort(np.asarray(chosen, dtype=np.int64))


@dataclass
class Sessions:
    """Feed sessions in time order; ``number`` is the global session number (the ``r<n>`` request id)."""

    user: np.ndarray
    ts: np.ndarray
    views: np.ndarray
    """How many entries of the page the user scrolls through."""
    number: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


def plan_day(
    rng: np.random.Generator,
    cfg: SimConfig,
    users: np.ndarray,
    activity: np.ndarray,
    day_start: int,
    first_number: int,
) -> Sessions:
    """Poisson sessions per user at uniform times of the day. ``activity`` is the world's sessions per
    user-day for ``users``; rates are ``sessions_per_day`` scaled by activity / mean activity, or the
    world's own rates with ``use_world_activity``."""
    act = np.asarray(activity, dtype=np.float64)
    if cfg.use_world_activity:
        rate = act
    else:
        mean = float(act.mean()) if act.size and act.mean() > 0 else 1.0
        rate = cfg.sessions_per_day * act / mean
    n_s = rng.poisson(rate)
    su = np.repeat(users, n_s)
    sts = day_start + rng.integers(0, DAY, su.shape[0], dtype=np.int64)
    order = np.lexsort((su, sts))
    su, sts = su[order], sts[order]
    views = rng.integers(cfg.min_views, cfg.max_views + 1, su.shape[0])
    views = np.minimum(views, cfg.feed_size)
    number = first_number + np.arange(su.shape[0], dtype=np.int64)
    return Sessions(su, sts, views.astype(np.int64), number)


def batches(sessions: Sessions, max_size: int, max_seconds: int) -> Iterator[np.ndarray]:
    """Consecutive index ranges of ``sessions`` (time order) with no user twice, at most ``max_size``
    sessions and at most ``max_seconds`` between the first and last session."""
    start = 0
    seen: set[int] = set()
    users = sessions.user.tolist()
    ts = sessions.ts
    for i, u in enumerate(users):
        if i > start and (u in seen or i - start >= max_size or ts[i] - ts[start] >= max_seconds):
            yield np.arange(start, i)
            start = i
            seen = set()
        seen.add(u)
    if start < len(users):
        yield np.arange(start, len(users))

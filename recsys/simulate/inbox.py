"""Shares waiting for the friend: a shared post is seen at the friend's next session after it arrives.

Why hold them: the world's convention is that a share reaches the friend as an impression with request
id ``s<n>``; in the simulation the friend only looks at the app when a session starts, so the post waits
here until then. Shares to users outside the simulated sample, or arriving after the last session,
are logged as shares but never seen (counted by :meth:`ShareInbox.undelivered`).
"""

from __future__ import annotations

import numpy as np

from recsys.simulate.behaviour import NewShares

_FIELDS = ("to_user", "item", "post", "kol", "arrive_ts", "gid", "sharer_bought")


class ShareInbox:
    def __init__(self, simulated_users: np.ndarray) -> None:
        self._simulated = np.sort(np.asarray(simulated_users, dtype=np.int64))
        self._pending = {f: np.zeros(0, dtype=np.int64) for f in _FIELDS}
        self.dropped_outside = 0
        self.delivered = 0

    def add(self, shares: NewShares) -> None:
        to = shares.to_user
        pos = np.minimum(np.searchsorted(self._simulated, to), max(len(self._simulated) - 1, 0))
        inside = (self._simulated[pos] == to) if len(self._simulated) else np.zeros(len(to), dtype=bool)
        self.dropped_outside += int((~inside).sum())
        for f in _FIELDS:
            self._pending[f] = np.concatenate([self._pending[f], np.asarray(getattr(shares, f))[inside]])

    def take(self, users: np.ndarray, session_ts: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Shares deliverable to the given sessions (distinct users): (session position, share fields),
        ordered by session position then share generation id; taken shares leave the inbox."""
        to = self._pending["to_user"]
        if not len(to) or not len(users):
            return np.zeros(0, dtype=np.int64), {f: np.zeros(0, dtype=np.int64) for f in _FIELDS}
        order = np.argsort(users, kind="stable")
        su = np.asarray(users, dtype=np.int64)[order]
        pos = np.minimum(np.searchsorted(su, to), len(su) - 1)
        match = su[pos] == to
        session = np.where(match, order[pos], -1)
        ready = match & (self._pending["arrive_ts"] <= np.asarray(session_ts)[np.maximum(session, 0)])
        idx = np.flatnonzero(ready)
        idx = idx[np.lexsort((self._pending["gid"][idx], session[idx]))]
        out = {f: self._pending[f][idx] for f in _FIELDS}
        keep = ~ready
        for f in _FIELDS:
            self._pending[f] = self._pending[f][keep]
        self.delivered += len(idx)
        return session[idx], out

    def undelivered(self) -> int:
        """Shares to simulated users still waiting (their friend had no later session)."""
        return len(self._pending["to_user"])

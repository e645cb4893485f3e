"""The simulated event log as a ``recsys.schema.EVENTS`` table, with the world's request-id scheme.

Why the same scheme: attribution (``recsys.attribution``) and cascade reconstruction
(``recsys.world.cascades``) must work on simulated logs as on generated ones. So, as in
``recsys.world.generate``: rows are sorted by ``ts`` (ties: generation order); feed impressions and
reactions carry ``r<n>`` (n = global feed session); shares are numbered 0, 1, 2… in file order, and
the friend's impression of a shared post and its reactions carry ``s<n>`` (n = that share's number).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from recsys.world.event_simulator import A_SHARE, REQ_SHARE, EventChunk


class EventLog:
    def __init__(self) -> None:
        self._parts: list[EventChunk] = []

    def add(self, chunk: EventChunk) -> None:
        if len(chunk):
            self._parts.append(chunk)

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def chunk(self) -> EventChunk:
        """All events in file order (sorted by ts, stable)."""
        if not self._parts:
            return EventChunk.empty()
        ev = EventChunk.concat(self._parts)
        return ev.take(np.argsort(ev.ts, kind="stable"))

    def table(self) -> pa.Table:
        ev = self.chunk()
        # share generation id -> rank of that share in file order
        is_share = ev.action == A_SHARE
        gids = ev.share_gid[is_share]
        rank = np.full(int(gids.max()) + 1 if gids.size else 0, -1, dtype=np.int64)
        rank[gids] = np.arange(gids.size, dtype=np.int64)
        via_share = ev.req_kind == REQ_SHARE
        num = ev.req_num.copy()
        if via_share.any():
            num[via_share] = rank[ev.req_num[via_share]]
            if (num[via_share] < 0).any():
                raise RuntimeError("internal error: an event refers to a share that was never logged")
        return replace(ev, req_num=num).to_events_table()

"""The simulation loop's state, free of any store or ranker: sessions in, pages in, events out.

Why split this way: the caller (``kolfeed.simulation_runner``) owns the production pieces — it reads
the feature store, ranks with ``FeedRanker`` and writes events back — while everything decided by the
ground truth (who opens the app, what they do, where shares go, how the log is numbered) lives here,
deterministic for a seed and testable without a store.

Per step the caller does::

    for step in sim.steps():                       # time-ordered batches, no user twice per batch
        pages = [rank(user, arm, exclude=step.shared_items[i]) for i, user in enumerate(step.user)]
        new_events = sim.apply(step, pages)        # ground truth reacts; log + social proof updated
        write new_events to the store              # so the next batch's feeds reflect them
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.simulate.behaviour import Behaviour, Impressions
from recsys.simulate.config import SimConfig
from recsys.simulate.inbox import ShareInbox
from recsys.simulate.log import EventLog
from recsys.simulate.schedule import Sessions, batches, plan_day
from recsys.world.config import DAY
from recsys.world.event_simulator import A_BUY, REQ_FEED, REQ_SHARE, SLOT_SECONDS, EventChunk
from recsys.world.truth import GroundTruth

Page = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(item ids, post ids, kol ids) of one ranked page, best first; -1 where an entry has no post/KOL."""


@dataclass
class Step:
    """One batch of sessions (distinct users, time order) plus the shared posts each will see first."""

    day: int
    user: np.ndarray
    ts: np.ndarray
    views: np.ndarray
    number: np.ndarray
    arm: np.ndarray
    """Arm index of each session's user."""
    share_session: np.ndarray
    share: dict[str, np.ndarray]
    shared_items: list[set[int]] = field(default_factory=list)
    """Per session: items arriving by share (the caller excludes them from the page)."""


@dataclass
class SimStats:
    sessions: int = 0
    pages_short: int = 0
    """Sessions whose page had fewer entries than the user would scroll through."""
    entries_without_kol: int = 0
    shares_delivered: int = 0
    shares_to_unsimulated: int = 0
    shares_undelivered: int = 0


class Simulation:
    def __init__(
        self,
        truth: GroundTruth,
        cfg: SimConfig,
        users: np.ndarray,
        user_arm: np.ndarray,
        start_ts: int,
    ) -> None:
        self.truth = truth
        self.cfg = cfg
        self.users = np.asarray(users, dtype=np.int64)
        self.user_arm = np.asarray(user_arm, dtype=np.int64)
        if self.users.shape != self.user_arm.shape:
            raise ValueError("users and user_arm differ in length")
        self._arm_sorted = np.argsort(self.users)
        self.start_ts = int(start_ts)
        self.behaviour = Behaviour(truth, cfg.share_delay_mean_s)
        self.inbox = ShareInbox(self.users)
        self.log = EventLog()
        self.stats = SimStats()
        self._rng = np.random.default_rng([cfg.seed, 3])
        self._next_session = 0

    @property
    def end_ts(self) -> int:
        return self.start_ts + self.cfg.days * DAY

    def arm_of(self, users: np.ndarray) -> np.ndarray:
        su = self.users[self._arm_sorted]
        pos = np.searchsorted(su, users)
        return self.user_arm[self._arm_sorted[pos]]

    def sessions_of_day(self, d: int) -> Sessions:
        rng = np.random.default_rng([self.cfg.seed, 2, d])
        s = plan_day(
            rng,
            self.cfg,
            self.users,
            self.truth.user_activity[self.users],
            self.start_ts + d * DAY,
            self._next_session,
        )
        self._next_session += len(s)
        return s

    def steps(self) -> Iterator[Step]:
        for d in range(self.cfg.days):
            s = self.sessions_of_day(d)
            for idx in batches(s, self.cfg.batch_size, self.cfg.batch_seconds):
                users, ts = s.user[idx], s.ts[idx]
                share_session, share = self.inbox.take(users, ts)
                shared_items: list[set[int]] = [set() for _ in range(len(idx))]
                for sess, item in zip(share_session.tolist(), share["item"].tolist(), strict=True):
                    shared_items[sess].add(item)
                yield Step(
                    day=d,
                    user=users,
                    ts=ts,
                    views=s.views[idx],
                    number=s.number[idx],
                    arm=self.arm_of(users),
                    share_session=share_session,
                    share=share,
                    shared_items=shared_items,
                )
        self.stats.shares_undelivered = self.inbox.undelivered()
        self.stats.shares_to_unsimulated = self.inbox.dropped_outside

    def apply(self, step: Step, pages: Sequence[Page]) -> EventChunk:
        """React to the step's shared posts and pages (each truncated to what the user scrolls through)
        and return the new events (file order) for the store."""
        if len(pages) != len(step.user):
            raise ValueError(f"{len(pages)} pages for {len(step.user)} sessions")
        n_sh = len(step.share_session)
        # shared posts first, one slot each, then the page
        shared_before = np.bincount(step.share_session, minlength=len(step.user)) if n_sh else None
        parts_u, parts_i, parts_p, parts_k, parts_ts, parts_num = [], [], [], [], [], []
        for j, (items, posts, kols) in enumerate(pages):
            v = int(step.views[j])
            if len(items) < v:
                self.stats.pages_short += 1
            items, posts, kols = items[:v], posts[:v], kols[:v]
            k = len(items)
            offset = 0 if shared_before is None else int(shared_before[j])
            parts_u.append(np.full(k, step.user[j], dtype=np.int64))
            parts_i.append(np.asarray(items, dtype=np.int64))
            parts_p.append(np.asarray(posts, dtype=np.int64))
            parts_k.append(np.asarray(kols, dtype=np.int64))
            parts_ts.append(step.ts[j] + (offset + np.arange(k, dtype=np.int64)) * SLOT_SECONDS)
            parts_num.append(np.full(k, step.number[j], dtype=np.int64))
        self.stats.sessions += len(pages)
        feed_kol = np.concatenate(parts_k) if parts_k else np.zeros(0, dtype=np.int64)
        self.stats.entries_without_kol += int((feed_kol < 0).sum())
        n_feed = int(sum(len(p) for p in parts_u))
        if n_sh:
            sess = step.share_session
            first = np.searchsorted(sess, sess, side="left")
            slot = np.arange(n_sh) - first
            sh_ts = step.ts[sess] + slot * SLOT_SECONDS
        else:
            sh_ts = np.zeros(0, dtype=np.int64)
        imp = Impressions(
            user=np.concatenate([step.user[step.share_session], *parts_u]),
            item=np.concatenate([step.share["item"], *parts_i]),
            post=np.concatenate([step.share["post"], *parts_p]),
            kol=np.concatenate([step.share["kol"], *parts_k]),
            ts=np.concatenate([sh_ts, *parts_ts]).astype(np.int64),
            from_friend=np.concatenate([np.ones(n_sh, dtype=bool), np.zeros(n_feed, dtype=bool)]),
            sharer_bought=np.concatenate([step.share["sharer_bought"], np.zeros(n_feed, dtype=np.int64)]),
            req_kind=np.concatenate(
                [np.full(n_sh, REQ_SHARE, dtype=np.int8), np.full(n_feed, REQ_FEED, dtype=np.int8)]
            ),
            req_num=np.concatenate([step.share["gid"], *parts_num]),
        )
        self.stats.shares_delivered += n_sh
        events, shares = self.behaviour.react(self._rng, imp)
        is_buy = events.action == A_BUY
        self.behaviour.add_buys(events.user_id[is_buy], events.item_id[is_buy])
        self.inbox.add(shares)
        self.log.add(events)
        return events.take(np.argsort(events.ts, kind="stable"))

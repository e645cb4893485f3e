"""What a simulated user does with the entries of a page: decided by the world's hidden ground truth.

Why the same functions as the generator: ``GroundTruth`` (click, hide, like, save, cart, buy, share,
friend choice) produced the world's logged history, so a variant is scored by the very preferences
the model was trained to recover; timings follow ``recsys.world.event_simulator`` (click +2–20 s, cart
+20–300 s, buy +30–1800 s after cart, share after the buy or the click).

An entry without a promoting creator (the ranker's popular backfill may show a bare product) is judged
as if promoted by a *neutral* creator: median trust, median creator–category fit, off-vertical — a
product nobody vouches for converts like an average creator's off-topic post. Such entries are logged
with null ``kol_id``/``post_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recsys.world.event_simulator import EventChunk, react
from recsys.world.truth import GroundTruth, SocialProof


@dataclass
class Impressions:
    """Entries users scrolled past, aligned arrays; ``post``/``kol`` are -1 where the entry had none."""

    user: np.ndarray
    item: np.ndarray
    post: np.ndarray
    kol: np.ndarray
    ts: np.ndarray
    from_friend: np.ndarray
    """bool: reached the user through a friend's share (request id ``s<n>``)."""
    sharer_bought: np.ndarray
    """0/1: the friend who shared it had bought it (social proof on top of the counted friends)."""
    req_kind: np.ndarray
    req_num: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass
class NewShares:
    """Shares made in one reaction step: who receives what, when it arrives, and its generation id."""

    to_user: np.ndarray
    item: np.ndarray
    post: np.ndarray
    kol: np.ndarray
    arrive_ts: np.ndarray
    gid: np.ndarray
    sharer_bought: np.ndarray


def with_neutral_kol(truth: GroundTruth) -> GroundTruth:
    """A copy of ``truth`` with one extra creator (index ``n_kols``) that has neutral parameters."""
    n_cats = truth.kol_fit.shape[1]
    fit_row = np.full((1, n_cats), float(np.median(truth.kol_fit)), dtype=truth.kol_fit.dtype)
    return replace(
        truth,
        kol_trust=np.append(truth.kol_trust, np.median(truth.kol_trust)).astype(truth.kol_trust.dtype),
        kol_pull=np.append(truth.kol_pull, 0.0).astype(truth.kol_pull.dtype),
        kol_fit=np.vstack([truth.kol_fit, fit_row]),
        kol_vertical_mask=np.vstack(
            [truth.kol_vertical_mask, np.zeros((1, n_cats), dtype=truth.kol_vertical_mask.dtype)]
        ),
    )


class Behaviour:
    """Ground-truth reactions plus the running record of who bought what (social proof)."""

    def __init__(self, truth: GroundTruth, share_delay_mean_s: float) -> None:
        self.truth = truth
        self._judge = with_neutral_kol(truth)
        self.neutral_kol = truth.n_kols
        self.proof = SocialProof(truth)
        self.share_delay_mean_s = share_delay_mean_s
        self.next_share = 0

    def add_buys(self, users: np.ndarray, items: np.ndarray) -> None:
        if len(users):
            self.proof.add(np.asarray(users, np.int64), np.asarray(items, np.int64))

    def react(self, rng: np.random.Generator, imp: Impressions) -> tuple[EventChunk, NewShares]:
        """Events of every impression (the impression itself first) and the shares they produced."""
        kol = np.where(imp.kol >= 0, imp.kol, self.neutral_kol)
        from_friend = imp.from_friend.astype(np.float64)
        r = react(
            self._judge,
            self.proof,
            rng,
            imp.user,
            imp.item,
            kol,
            imp.ts,
            from_friend,
            imp.sharer_bought,
            self.next_share,
        )
        self.next_share += r.share_rows.shape[0]
        events = r.events(
            self.truth,
            imp.user,
            imp.item,
            post=imp.post,
            kol=imp.kol,
            req_kind=imp.req_kind[r.pos].astype(np.int8),
            req_num=imp.req_num[r.pos],
        )
        n_share = r.share_rows.shape[0]
        delay = 60 + np.floor(rng.exponential(max(self.share_delay_mean_s, 1e-9), n_share)).astype(np.int64)
        cs = r.share_rows
        shares = NewShares(
            to_user=r.share_to,
            item=imp.item[cs],
            post=imp.post[cs],
            kol=imp.kol[cs],
            arrive_ts=r.share_ts + delay,
            gid=r.share_gid,
            sharer_bought=r.sharer_bought,
        )
        return events, shares

"""What a simulated user does with the entries of a page: decided by the world's hidden ground truth.

Why the same functions as the generator: ``GroundTruth`` (click, hide, like, save, cart, buy, share,
friend choice) produced the world's logged history, so a variant is scored by the very preferences
the model was trained to recover; timings follow ``recsys.world.events`` (click +2–20 s, cart
+20–300 s, buy +30–1800 s after cart, share after the buy or the click).

An entry without a promoting creator (the ranker's popular backfill may show a bare product) is judged
as if promoted by a *neutral* creator: median trust, median creator–category fit, off-vertical — a
product nobody vouches for converts like an average creator's off-topic post. Such entries are logged
with null ``kol_id``/``post_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recsys.world.events import A_BUY, A_CART, A_CLICK, A_HIDE, A_IMP, A_LIKE, A_SAVE, A_SHARE, EventChunk
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
        t = self._judge
        u, item, ts = imp.user, imp.item, imp.ts
        kol = np.where(imp.kol >= 0, imp.kol, self.neutral_kol)
        n = len(imp)
        clicked = rng.random(n) < t.click_prob(u, item, kol, from_friend=imp.from_friend.astype(np.float64))
        nc = np.flatnonzero(~clicked)
        hidden = nc[rng.random(nc.shape[0]) < t.hide_prob(u[nc], item[nc], kol[nc])]
        c = np.flatnonzero(clicked)
        uc, ic, kc = u[c], item[c], kol[c]
        m = c.shape[0]
        nfb = self.proof.count_friends_bought(uc, ic) + imp.sharer_bought[c]
        bought = rng.random(m) < t.buy_prob(uc, ic, kc, nfb)
        liked = rng.random(m) < t.like_prob(uc, ic, kc)
        saved = rng.random(m) < t.save_prob(uc, ic, kc)
        carted = bought | (rng.random(m) < t.cart_prob(uc, ic, kc))
        shared = rng.random(m) < t.share_prob(uc, ic, kc, bought=bought)
        t_click = ts[c] + rng.integers(2, 21, m)
        t_like = t_click + rng.integers(3, 61, m)
        t_save = t_click + rng.integers(3, 121, m)
        t_cart = t_click + rng.integers(20, 301, m)
        t_buy = t_cart + rng.integers(30, 1801, m)
        t_share = np.where(bought, t_buy, t_click) + rng.integers(5, 601, m)
        t_hide = ts[hidden] + rng.integers(1, 11, hidden.shape[0])

        s = np.flatnonzero(shared)
        to = t.pick_share_friend(rng, uc[s])
        ok = to >= 0
        s, to = s[ok], to[ok]
        gid = self.next_share + np.arange(s.shape[0], dtype=np.int64)
        self.next_share += s.shape[0]

        blocks: list[tuple[np.ndarray, int, np.ndarray]] = [
            (np.arange(n), A_IMP, ts),
            (hidden, A_HIDE, t_hide),
            (c, A_CLICK, t_click),
            (c[liked], A_LIKE, t_like[liked]),
            (c[saved], A_SAVE, t_save[saved]),
            (c[carted], A_CART, t_cart[carted]),
            (c[bought], A_BUY, t_buy[bought]),
            (c[s], A_SHARE, t_share[s]),
        ]
        pos = np.concatenate([b[0] for b in blocks]).astype(np.int64)
        action = np.concatenate([np.full(b[0].shape[0], b[1], dtype=np.int8) for b in blocks])
        ev_ts = np.concatenate([b[2] for b in blocks]).astype(np.int64)
        total = pos.shape[0]
        n_share = s.shape[0]
        to_user = np.full(total, -1, dtype=np.int64)
        share_gid = np.full(total, -1, dtype=np.int64)
        to_user[total - n_share :] = to
        share_gid[total - n_share :] = gid
        value = np.full(total, np.nan)
        is_buy = action == A_BUY
        value[is_buy] = self.truth.item_price[item[pos[is_buy]]]
        events = EventChunk(
            ts=ev_ts,
            user=u[pos],
            item=item[pos],
            action=action,
            post=imp.post[pos],
            kol=imp.kol[pos],
            to_user=to_user,
            req_kind=imp.req_kind[pos].astype(np.int8),
            req_num=imp.req_num[pos],
            value=value,
            share_gid=share_gid,
        )
        delay = 60 + np.floor(rng.exponential(max(self.share_delay_mean_s, 1e-9), n_share)).astype(np.int64)
        cs = c[s]
        shares = NewShares(
            to_user=to,
            item=item[cs],
            post=imp.post[cs],
            kol=imp.kol[cs],
            arrive_ts=t_share[s] + delay,
            gid=gid,
            sharer_bought=bought[s].astype(np.int64),
        )
        return events, shares

"""Day-by-day event simulation: feed sessions, reactions, and multi-hop share cascades.

Every decision goes through ``GroundTruth`` (click/hide/like/save/cart/buy/share probabilities,
friend choice), so the logged events follow the same model the offline simulator uses.

One day, fully vectorised:
1. Each user opens Poisson(activity) feed sessions at uniform times; sessions are numbered
   globally in time order, which gives the feed request id ``r<session>``. A session shows
   6–14 impressions, each a post picked from: a followed KOL's recent posts (55%), popular posts
   weighted by KOL follower pull (30%), or any published post (15%).
2. Wave 0 reacts to the feed impressions; each later wave reacts to the posts friends shared in
   the wave before (up to ``max_share_depth`` hops), so group-buy cascades go multi-hop.
3. Social proof (``n_friends_bought``) counts friends' buys up to the start of the day, plus one
   when the friend who shared the post had bought it.

Event timing within a reaction: impression → click (+2–20 s) → like/save, cart (+20–300 s) →
buy (+30–1800 s after cart) → share (after the buy, else after the click). A shared post reaches
the friend 1 min + Exp(2 h) later, as an ``impression`` with the original post_id and kol_id.
Shares carry an internal generation id (``share_gid``) until the writer turns it into the share's
rank in the events file (see ``recsys.world.generate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.event_columns import EventColumns
from recsys.row_maps import Csr
from recsys.schema import ACTION_CODE
from recsys.world.config import DAY, WorldConfig
from recsys.world.entities import StaticWorld
from recsys.world.truth import GroundTruth, SocialProof

FOLLOWED_SHARE = 0.55
POPULAR_SHARE = 0.30
SLOT_SECONDS = 8
SHARE_DELAY_MEAN = 7_200.0

REQ_FEED = 0
REQ_SHARE = 1
REQUEST_PREFIXES: tuple[str, ...] = ("r", "s")  # indexed by REQ_FEED, REQ_SHARE

A_IMP, A_CLICK, A_LIKE, A_SAVE = (
    ACTION_CODE["impression"],
    ACTION_CODE["click"],
    ACTION_CODE["like"],
    ACTION_CODE["save"],
)
A_CART, A_SHARE, A_BUY, A_HIDE = (
    ACTION_CODE["cart"],
    ACTION_CODE["share"],
    ACTION_CODE["buy"],
    ACTION_CODE["hide"],
)


@dataclass
class EventChunk(EventColumns):
    """The world's events: :class:`~recsys.event_columns.EventColumns` (``to_user_id`` -1 and ``value``
    NaN where absent, no ``request_id``) plus the columns its request ids are made from.
    ``req_kind`` is REQ_FEED (``req_num`` = session number) or REQ_SHARE (``req_num`` = share gid);
    ``share_gid`` numbers share events (-1 elsewhere)."""

    req_kind: np.ndarray = field(kw_only=True)
    req_num: np.ndarray = field(kw_only=True)
    share_gid: np.ndarray = field(kw_only=True)

    def to_events_table(self) -> pa.Table:
        """As a ``recsys.schema.EVENTS`` table with request ids ``r<n>`` (feed) and ``s<n>`` (through
        a share); ``req_num`` must already hold share *ranks* (not gids) for share-received rows."""
        prefix = pa.DictionaryArray.from_arrays(
            pa.array(self.req_kind.astype(np.int32)), pa.array(list(REQUEST_PREFIXES), pa.string())
        ).cast(pa.string())
        request_id = pc.binary_join_element_wise(prefix, pa.array(self.req_num).cast(pa.string()), "")
        return self.to_table(request_id)

    @classmethod
    def empty(cls) -> EventChunk:
        i = np.empty(0, dtype=np.int64)
        i8 = np.empty(0, dtype=np.int8)
        return cls(
            ts=i,
            user_id=i,
            item_id=i,
            action=i8,
            post_id=i,
            kol_id=i,
            to_user_id=i,
            value=np.empty(0),
            req_kind=i8,
            req_num=i,
            share_gid=i,
        )


@dataclass
class _Wave:
    user: np.ndarray
    post: np.ndarray
    ts: np.ndarray
    req_kind: int
    req_num: np.ndarray
    sharer_bought: np.ndarray  # 0/1 per impression; all 0 for feed impressions


class EventSimulator:
    """Holds the cross-day state (session/share counters, who bought what)."""

    def __init__(self, cfg: WorldConfig, world: StaticWorld) -> None:
        self.cfg = cfg
        self.w = world
        self.truth = world.truth
        self.proof = SocialProof(world.truth)
        self.next_session = 0
        self.next_share = 0
        n_p = world.post_kol.shape[0]
        self.n_posts = n_p
        follows = Csr.build(world.follow_user, world.follow_kol, cfg.n_users, sort_cols=True)
        self.follow_indptr, self.follow_kols = follows.indptr, follows.indices
        # one trailing dummy entry so users without follows index safely (their pick is masked out)
        self.follow_kols_padded = np.append(self.follow_kols, np.int64(0))
        pid = np.arange(n_p, dtype=np.int64)
        self.kol_posts = np.lexsort((pid, world.post_kol))
        self.kol_post_key = world.post_kol[self.kol_posts] * n_p + self.kol_posts
        self.kol_ptr = np.zeros(cfg.n_kols + 1, dtype=np.int64)
        np.cumsum(np.bincount(world.post_kol, minlength=cfg.n_kols), out=self.kol_ptr[1:])
        self.post_cum_pull = np.cumsum(self.truth.kol_pull[world.post_kol])

    # ---- feed ----
    def _pick_posts(self, rng: np.random.Generator, users: np.ndarray, n_avail: int) -> np.ndarray:
        n = users.shape[0]
        r_src, r_a, r_b, r_c = rng.random(n), rng.random(n), rng.random(n), rng.random(n)
        popular = np.searchsorted(
            self.post_cum_pull[:n_avail], r_a * self.post_cum_pull[n_avail - 1], side="right"
        )
        popular = np.minimum(popular, n_avail - 1)
        anyp = np.floor(r_b * n_avail).astype(np.int64)
        start = self.follow_indptr[users]
        deg = self.follow_indptr[users + 1] - start
        fk = self.follow_kols_padded[start + np.floor(r_c * deg).astype(np.int64)]
        avail_k = np.searchsorted(self.kol_post_key, fk * self.n_posts + n_avail) - self.kol_ptr[fk]
        offset = avail_k - 1 - np.floor(avail_k * r_a * r_a).astype(np.int64)  # skewed to recent posts
        followed = self.kol_posts[np.clip(self.kol_ptr[fk] + offset, 0, self.n_posts - 1)]
        can_follow = (deg > 0) & (avail_k > 0)
        use_f = (r_src < FOLLOWED_SHARE) & can_follow
        use_any = r_src >= FOLLOWED_SHARE + POPULAR_SHARE
        return np.where(use_f, followed, np.where(use_any, anyp, popular))

    def day(self, d: int, rng: np.random.Generator) -> EventChunk:
        cfg = self.cfg
        day_start = cfg.start_ts + d * DAY
        n_avail = int(np.searchsorted(self.w.post_created_at, day_start, side="left"))
        if n_avail == 0:
            return EventChunk.empty()
        n_s = rng.poisson(self.truth.user_activity)
        su = np.repeat(np.arange(cfg.n_users, dtype=np.int64), n_s)
        sts = day_start + rng.integers(0, DAY, su.shape[0], dtype=np.int64)
        o = np.lexsort((su, sts))
        su, sts = su[o], sts[o]
        n_sess = su.shape[0]
        sess_num = self.next_session + np.arange(n_sess, dtype=np.int64)
        self.next_session += n_sess
        length = rng.integers(cfg.min_impressions, cfg.max_impressions + 1, n_sess)
        sidx = np.repeat(np.arange(n_sess), length)
        slot = np.arange(sidx.shape[0]) - np.repeat(np.cumsum(length) - length, length)
        users = su[sidx]
        posts = self._pick_posts(rng, users, n_avail)
        wave = _Wave(
            users,
            posts,
            sts[sidx] + slot * SLOT_SECONDS,
            REQ_FEED,
            sess_num[sidx],
            np.zeros(users.shape[0], np.int64),
        )
        parts: list[EventChunk] = []
        buyers: list[np.ndarray] = []
        bought_items: list[np.ndarray] = []
        depth = 0
        while wave.user.shape[0] > 0:
            ev, next_wave = self._react(rng, wave, from_friend=depth > 0)
            parts.append(ev)
            is_buy = ev.action == A_BUY
            buyers.append(ev.user_id[is_buy])
            bought_items.append(ev.item_id[is_buy])
            depth += 1
            if depth > cfg.max_share_depth:
                break
            wave = next_wave
        self.proof.add(np.concatenate(buyers), np.concatenate(bought_items))
        return EventChunk.concat(parts)

    # ---- reactions ----
    def _react(self, rng: np.random.Generator, wave: _Wave, from_friend: bool) -> tuple[EventChunk, _Wave]:
        item, kol = self.w.post_item[wave.post], self.w.post_kol[wave.post]
        ff = np.full(wave.user.shape[0], 1.0 if from_friend else 0.0)
        r = react(
            self.truth,
            self.proof,
            rng,
            wave.user,
            item,
            kol,
            wave.ts,
            ff,
            wave.sharer_bought,
            self.next_share,
        )
        self.next_share += r.share_rows.shape[0]
        ev = r.events(
            self.truth,
            wave.user,
            item,
            post=wave.post,
            kol=kol,
            req_kind=np.full(r.pos.shape[0], wave.req_kind, dtype=np.int8),
            req_num=wave.req_num[r.pos],
        )
        n_share = r.share_rows.shape[0]
        delay = 60 + np.floor(rng.exponential(SHARE_DELAY_MEAN, n_share)).astype(np.int64)
        nxt = _Wave(
            r.share_to, wave.post[r.share_rows], r.share_ts + delay, REQ_SHARE, r.share_gid, r.sharer_bought
        )
        return ev, nxt


@dataclass
class Reactions:
    """What one batch of impressions led to, as positions into that batch (the impression first)."""

    pos: np.ndarray  # batch row of every event
    action: np.ndarray  # int8 action code of every event
    ts: np.ndarray  # int64 time of every event
    to_user: np.ndarray  # share recipient (-1 for other actions)
    event_share_gid: np.ndarray  # share generation id on share events (-1 otherwise)
    share_rows: np.ndarray  # batch rows that were shared (in share-event order)
    share_to: np.ndarray
    share_gid: np.ndarray
    share_ts: np.ndarray
    sharer_bought: np.ndarray  # 1 where the sharer had bought the item

    def events(
        self,
        truth: GroundTruth,
        user: np.ndarray,
        item: np.ndarray,
        post: np.ndarray,
        kol: np.ndarray,
        req_kind: np.ndarray,
        req_num: np.ndarray,
    ) -> EventChunk:
        """The events as a chunk; ``user``/``item``/``post``/``kol`` are per batch row, the request
        columns already per event."""
        value = np.full(self.pos.shape[0], np.nan)
        is_buy = self.action == A_BUY
        value[is_buy] = truth.item_price[item[self.pos[is_buy]]]
        return EventChunk(
            ts=self.ts,
            user_id=user[self.pos],
            item_id=item[self.pos],
            action=self.action,
            post_id=post[self.pos],
            kol_id=kol[self.pos],
            to_user_id=self.to_user,
            req_kind=req_kind,
            req_num=req_num,
            value=value,
            share_gid=self.event_share_gid,
        )


def react(
    truth: GroundTruth,
    proof: SocialProof,
    rng: np.random.Generator,
    u: np.ndarray,
    item: np.ndarray,
    kol: np.ndarray,
    ts: np.ndarray,
    from_friend: np.ndarray,
    sharer_bought: np.ndarray,
    first_gid: int,
) -> Reactions:
    """The ground truth decides, per impression: hide or click; then like, save, cart, buy and share
    (to a friend it picks). One function for the world generator and the offline simulator, so data
    and simulation follow the same model draw for draw."""
    t = truth
    n = u.shape[0]
    clicked = rng.random(n) < t.click_prob(u, item, kol, from_friend=from_friend)
    nc = np.flatnonzero(~clicked)
    hidden = nc[rng.random(nc.shape[0]) < t.hide_prob(u[nc], item[nc], kol[nc])]
    c = np.flatnonzero(clicked)
    uc, ic, kc = u[c], item[c], kol[c]
    m = c.shape[0]
    nfb = proof.count_friends_bought(uc, ic) + sharer_bought[c]
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
    gid = first_gid + np.arange(s.shape[0], dtype=np.int64)

    # (batch rows, action, ts) for every event; shares last, in the order of ``s``
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
    event_gid = np.full(total, -1, dtype=np.int64)
    to_user[total - n_share :] = to
    event_gid[total - n_share :] = gid
    return Reactions(
        pos=pos,
        action=action,
        ts=ev_ts,
        to_user=to_user,
        event_share_gid=event_gid,
        share_rows=c[s],
        share_to=to,
        share_gid=gid,
        share_ts=t_share[s],
        sharer_bought=bought[s].astype(np.int64),
    )

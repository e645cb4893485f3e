"""Candidate generation: each source proposes item rows, remembered as a bitmask per item.

Why several sources: the embedding ANN only knows taste; a social-commerce feed also surfaces what
the user's creators just posted, what friends bought (trust), what is trending (cold start), and a
few posts of small creators (exploration, so new creators can ever be discovered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.index import search
from recsys.ranking.context import UserContext
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.variants import RankingVariant

ANN = 1
SIMILAR = 2
FOLLOWED = 4
AFFINITY = 8
FRIENDS = 16
TRENDING = 32
EXPLORE = 64
POPULAR = 128

_EMPTY = np.zeros(0, dtype=np.int64)
MAX_EXTRA_ANN = 1000
"""At most this many extra ANN neighbours are fetched to make up for filtered (seen) items."""


def squash(x: np.ndarray) -> np.ndarray:
    """Map an unbounded affinity to (-1, 1): x / (1 + |x|)."""
    x = np.asarray(x, dtype=np.float32)
    return x / (1.0 + np.abs(x))


@dataclass
class UserSignals:
    """Per-request facts about the user that both candidate generation and scoring need."""

    query: np.ndarray | None
    """Vector for dot-product item scores: the user's embedding, else the mean of recent items."""
    has_embedding: bool
    social_row: int
    kol_affinity: np.ndarray
    """(n_kols,) in [-1, 1]: max(static, follow floor, live) — negative live engagement subtracts."""
    followed: np.ndarray
    """(n_kols,) bool."""
    hidden_kols: np.ndarray
    """(n_kols,) bool."""
    friends_bought: dict[int, int]
    """Item row → number of friends who bought it (run data merged with the service's live data)."""
    trend_score: np.ndarray | None
    """Item row → trending score in [0, 1] when the service passed trending; None ⇒ use popularity."""
    trend_rows: np.ndarray
    """Trending item rows, best first."""


@dataclass
class CandidateSet:
    items: np.ndarray
    sources: np.ndarray
    explore_posts: np.ndarray = field(default_factory=lambda: _EMPTY)
    """Post indices of exploration candidates (their item rows are in ``items`` with the EXPLORE bit)."""


def user_signals(
    model: FeedModel,
    ctx: UserContext,
    variant: RankingVariant,
    trending: list[tuple[int, float]] | None,
    friends_bought: dict[int, int] | None,
) -> UserSignals:
    urow = model.users.row(ctx.user_id)
    query: np.ndarray | None = None
    if urow >= 0:
        query = model.user_emb[urow]
    else:
        recent = model.items.rows(ctx.recent_items[:50]) if ctx.recent_items else _EMPTY
        recent = recent[recent >= 0]
        if len(recent):
            query = model.item_emb[recent].mean(axis=0)

    n_kols = model.n_kols
    srow = model.social_users.row(ctx.user_id)
    aff = np.zeros(n_kols, dtype=np.float32)
    followed = np.zeros(n_kols, dtype=bool)
    if srow >= 0 and n_kols:
        krows = model.user_affinity.get(srow)
        aff[krows] = squash(model.user_affinity.get_values(srow))
        followed[model.user_follows.get(srow)] = True
        aff[followed] = np.maximum(aff[followed], variant.follow_bonus)
    if ctx.live_kol_affinity and n_kols:
        ids = np.fromiter(ctx.live_kol_affinity.keys(), dtype=np.int64)
        vals = squash(np.fromiter(ctx.live_kol_affinity.values(), dtype=np.float32, count=len(ids)))
        rows = model.kols.rows(ids)
        ok = rows >= 0
        rows, vals = rows[ok], vals[ok]
        pos = vals >= 0
        aff[rows[pos]] = np.maximum(aff[rows[pos]], vals[pos])
        aff[rows[~pos]] = np.clip(aff[rows[~pos]] + vals[~pos], -1.0, 1.0)
    hidden = np.zeros(n_kols, dtype=bool)
    if ctx.hidden_kols and n_kols:
        hrows = model.kols.rows(list(ctx.hidden_kols))
        hidden[hrows[hrows >= 0]] = True

    counts: dict[int, int] = {}
    if srow >= 0:
        friends = model.user_friends.get(srow)
        if len(friends):
            _, entries = model.user_buys.gather(friends)
            if len(entries):
                bought_rows = model.user_buys.indices[entries]
                uniq, cnt = np.unique(bought_rows, return_counts=True)
                counts = dict(zip(uniq.tolist(), cnt.tolist(), strict=True))
    if friends_bought:
        ids = np.fromiter(friends_bought.keys(), dtype=np.int64)
        rows = model.items.rows(ids)
        for r, c in zip(rows.tolist(), friends_bought.values(), strict=True):
            if r >= 0 and c > 0:
                counts[r] = max(counts.get(r, 0), int(c))

    trend_score: np.ndarray | None = None
    if trending:
        ids = np.fromiter((t[0] for t in trending), dtype=np.int64, count=len(trending))
        vals = np.fromiter((t[1] for t in trending), dtype=np.float32, count=len(trending))
        rows = model.items.rows(ids)
        ok = (rows >= 0) & np.isfinite(vals)
        rows, vals = rows[ok], vals[ok]
        order = np.argsort(-vals, kind="stable")
        trend_rows = rows[order]
        top = float(vals.max()) if len(vals) else 0.0
        trend_score = np.zeros(model.n_items, dtype=np.float32) if len(rows) else None
        if trend_score is not None and top > 0:
            trend_score[rows] = np.clip(vals / top, 0.0, 1.0)
        if trend_score is None:
            trend_rows = model.popular_items
    else:
        trend_rows = model.popular_items
    return UserSignals(
        query=query,
        has_embedding=urow >= 0,
        social_row=srow,
        kol_affinity=aff,
        followed=followed,
        hidden_kols=hidden,
        friends_bought=counts,
        trend_score=trend_score,
        trend_rows=trend_rows,
    )


def generate(
    model: FeedModel,
    ctx: UserContext,
    variant: RankingVariant,
    sig: UserSignals,
    n_filtered: int,
    ann: tuple[np.ndarray, np.ndarray] | None = None,
) -> CandidateSet:
    """Union of all sources. ``ann`` lets a batch caller pass precomputed (scores, ids) for the user."""
    cc = variant.candidates
    parts: list[np.ndarray] = []
    bits: list[int] = []

    def add(rows: np.ndarray, bit: int) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[rows >= 0]
        if len(rows):
            parts.append(rows)
            bits.append(bit)

    # 1. ANN on the user's embedding (+ neighbours of recently engaged items)
    if cc.ann_k > 0:
        if ann is not None:
            add(ann[1], ANN)
        elif sig.has_embedding and sig.query is not None:
            k = min(model.n_items, cc.ann_k + min(n_filtered, MAX_EXTRA_ANN))
            _, ids = search(model.index, sig.query[None, :], k)
            add(ids[0], ANN)
    if cc.similar_to_recent > 0 and ctx.recent_items:
        recent = model.items.rows(ctx.recent_items[:20])
        recent = recent[recent >= 0]
        if len(recent):
            q = model.item_emb[recent].mean(axis=0, keepdims=True)
            k = min(model.n_items, cc.similar_to_recent + len(recent) + min(n_filtered, MAX_EXTRA_ANN))
            _, ids = search(model.index, q, k)
            add(ids[0], SIMILAR)

    # 2. fresh posts of followed and high-affinity KOLs
    if cc.followed_kol_posts > 0 and len(model.post_ids):
        followed = np.flatnonzero(sig.followed & ~sig.hidden_kols)
        aff = np.where(sig.followed | sig.hidden_kols, -np.inf, sig.kol_affinity)
        n_aff = min(cc.affinity_kols, int((aff > 0).sum()))
        top_aff = np.argsort(-aff)[:n_aff] if n_aff else _EMPTY
        for kol_rows, bit in ((followed, FOLLOWED), (top_aff, AFFINITY)):
            if not len(kol_rows):
                continue
            owner, entries = model.kol_posts.gather(kol_rows)
            if not len(entries):
                continue
            # newest posts_per_kol per KOL (kol_posts rows are newest first)
            rank_in_kol = entries - model.kol_posts.indptr[kol_rows[owner]]
            posts = model.kol_posts.indices[entries[rank_in_kol < cc.posts_per_kol]]
            posts = posts[np.argsort(-model.post_created_at[posts], kind="stable")][: cc.followed_kol_posts]
            add(model.post_item[posts], bit)

    # 3. items bought by friends in the share graph
    if cc.friends_bought > 0 and sig.friends_bought:
        rows = np.fromiter(sig.friends_bought.keys(), dtype=np.int64, count=len(sig.friends_bought))
        cnt = np.fromiter(sig.friends_bought.values(), dtype=np.int64, count=len(rows))
        add(rows[np.argsort(-cnt, kind="stable")][: cc.friends_bought], FRIENDS)

    # 4. trending (service) or popular (run) items
    if cc.trending_k > 0:
        add(sig.trend_rows[: cc.trending_k + min(n_filtered, MAX_EXTRA_ANN)], TRENDING)

    # 5. exploration: newest posts of small creators the user does not follow
    explore = _EMPTY
    if cc.explore_slots > 0 and len(model.post_ids):
        pool = model.explore_pool(variant.explore_max_followers)
        kol = model.post_kol[pool]
        explore = pool[~sig.followed[kol] & ~sig.hidden_kols[kol]]
        add(model.post_item[explore], EXPLORE)

    if not parts:
        return CandidateSet(_EMPTY, np.zeros(0, dtype=np.int64), explore)
    rows = np.concatenate(parts)
    flags = np.repeat(np.array(bits, dtype=np.int64), [len(p) for p in parts])
    uniq, inv = np.unique(rows, return_inverse=True)
    sources = np.zeros(len(uniq), dtype=np.int64)
    np.bitwise_or.at(sources, inv, flags)
    return CandidateSet(uniq, sources, explore)

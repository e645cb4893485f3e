"""Candidate generation: each source proposes item rows, remembered as a bitmask per item.

Why several sources: the embedding ANN only knows taste; a social-commerce feed also surfaces what
the user's creators just posted, what friends bought (trust), what is trending (cold start), and a
few posts of small creators (exploration, so new creators can ever be discovered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.index import search_ids
from recsys.ranking.array_ops import run_starts, squash
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


@dataclass
class UserSignals:
    """Per-request facts about the user that both candidate generation and scoring need."""

    query: np.ndarray | None
    """Vector for dot-product item scores: the user's embedding, else the mean of recent items."""
    user_row: int
    """The user's embedding row, -1 without one (no row, or an all-zero one: no training data)."""
    social_row: int
    kol_affinity: np.ndarray
    """(n_kols,) in [-1, 1]: max(static, follow floor, live) — negative live engagement subtracts."""
    followed: np.ndarray
    """(n_kols,) bool."""
    hidden_kols: np.ndarray
    """(n_kols,) bool."""
    fb_rows: np.ndarray
    """Sorted item rows some friend bought (run data merged with the service's live data) ..."""
    fb_counts: np.ndarray
    """... and how many friends bought each (aligned with ``fb_rows``)."""
    trend_lookup: tuple[np.ndarray, np.ndarray] | None
    """(sorted item rows, trending score in [0, 1]) when the service passed trending; None ⇒ popularity."""
    trend_rows: np.ndarray
    """Trending item rows, best first."""
    trend_dense: np.ndarray | None
    """``trend_lookup`` as a score per item row, when the caller had it (see ``FeedRanker``)."""
    followed_rows: list[int]
    """Sorted KOL rows the user follows (``followed`` as a list; hidden ones included)."""
    hidden_rows: set[int]
    """KOL rows the user hid (``hidden_kols`` as a set)."""
    affinity_rows: list[int]
    """Sorted KOL rows whose ``kol_affinity`` may be non-zero; it is 0 everywhere else. A user touches
    tens of KOLs out of tens of thousands: candidate generation looks at these, not at every KOL."""


@dataclass
class CandidateSet:
    items: np.ndarray
    sources: np.ndarray
    explore_posts: np.ndarray = field(default_factory=lambda: _EMPTY)
    """Post indices of exploration candidates (their item rows are in ``items`` with the EXPLORE bit)."""


def _friends_bought(
    model: FeedModel, srow: int, live: dict[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item rows, friend counts): the run's friends' buys, maxed with the service's live counts
    (max, not sum, since the live data usually re-counts the same friends).

    Plain Python over ~100 buys and ~20 live entries: a dict costs less than numpy's per-call overhead
    of unique/lexsort on arrays this short."""
    counts: dict[int, int] = {}
    if srow >= 0:
        friends = model.user_friends.get(srow)
        if len(friends):
            bought = model.user_buys.heads(friends.tolist(), len(model.user_buys.indices))
            for row in bought.tolist():
                counts[row] = counts.get(row, 0) + 1
    if live:
        rows = model.items.rows(list(live.keys()))
        cnt = np.fromiter(live.values(), dtype=np.int64, count=len(live))
        for row, c in zip(rows.tolist(), cnt.tolist(), strict=True):
            if row >= 0 and c > 0 and c > counts.get(row, 0):
                counts[row] = c
    if not counts:
        return _EMPTY, _EMPTY
    keys = sorted(counts)
    return np.array(keys, dtype=np.int64), np.array([counts[k] for k in keys], dtype=np.int64)


def _mean_row(rows: np.ndarray) -> np.ndarray:
    """``rows.mean(axis=0)``, bit for bit (the same float32 sum, then one float32 division), without
    ``mean``'s Python-level bookkeeping."""
    return np.add.reduce(rows, axis=0) / len(rows)


def friends_count(sig: UserSignals, items: np.ndarray) -> np.ndarray:
    """Friends who bought each of ``items`` (0 for most)."""
    if not len(sig.fb_rows) or not len(items):
        return np.zeros(len(items), dtype=np.int64)
    pos = sig.fb_rows.searchsorted(items)
    np.minimum(pos, len(sig.fb_rows) - 1, out=pos)
    return np.where(sig.fb_rows[pos] == items, sig.fb_counts[pos], 0)


TrendRows = tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray]
"""(sorted item rows with their trending score in [0, 1] or None, trending item rows best first)."""


def trending_rows(model: FeedModel, trending: list[tuple[int, float]] | None) -> TrendRows:
    """The service's trending list in rows; without one, the run's popularity (and no lookup).

    The same list serves every user for a while (the service caches it), so :class:`FeedRanker`
    keeps the result of the last list it saw instead of converting it per request."""
    if trending:
        rows = model.items.rows([t[0] for t in trending])
        vals = np.fromiter((t[1] for t in trending), dtype=np.float32, count=len(trending))
        ok = (rows >= 0) & np.isfinite(vals)
        rows, vals = rows[ok], vals[ok]
        if len(rows):
            top = float(vals.max())
            scaled = np.clip(vals / top, 0.0, 1.0) if top > 0 else np.zeros_like(vals)
            by_row = np.lexsort((-scaled, rows))  # sorted by row; a repeated row keeps its best score
            srows, svals = rows[by_row], scaled[by_row]
            first = run_starts(srows)
            return (srows[first], svals[first].astype(np.float32)), rows[np.argsort(-vals, kind="stable")]
    return None, model.popular_items


def dense_trend(model: FeedModel, lookup: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """The trending scores of ``trending_rows`` as an array over all item rows (0 = not trending)."""
    if lookup is None:
        return None
    dense = np.zeros(model.n_items, dtype=np.float32)
    dense[lookup[0]] = lookup[1]
    return dense


def user_signals(
    model: FeedModel,
    ctx: UserContext,
    variant: RankingVariant,
    trending: list[tuple[int, float]] | None,
    friends_bought: dict[int, int] | None,
    trend: TrendRows | None = None,
    trend_dense: np.ndarray | None = None,
) -> UserSignals:
    """``trend`` = ``trending_rows(model, trending)`` when the caller already has it, ``trend_dense``
    = ``dense_trend(model, trend[0])``."""
    urow = model.users.row(ctx.user_id)
    if urow >= 0 and not model.user_emb[urow].any():
        urow = -1  # a zero row: no training data for this user (e.g. first seen in held-out events)
    query: np.ndarray | None = None
    if urow >= 0:
        query = model.user_emb[urow]
    else:
        recent = model.items.rows(ctx.recent_items[:50]) if ctx.recent_items else _EMPTY
        recent = recent[recent >= 0]
        if len(recent):
            query = _mean_row(model.item_emb.take(recent, axis=0))

    n_kols = model.n_kols
    srow = model.social_users.row(ctx.user_id)
    aff = np.zeros(n_kols, dtype=np.float32)
    followed = np.zeros(n_kols, dtype=bool)
    followed_rows: list[int] = []
    touched: set[int] = set()
    if srow >= 0 and n_kols:
        krows = model.user_affinity.get(srow)
        if len(krows):
            start = int(model.user_affinity.indptr[srow])
            aff[krows] = model.user_affinity_squashed[start : start + len(krows)]
            touched.update(krows.tolist())
        frows = model.user_follows.get(srow)
        if len(frows):
            followed[frows] = True
            aff[frows] = np.maximum(aff[frows], variant.follow_bonus)  # a repeated row reads the same value
            followed_rows = sorted(set(frows.tolist()))
            touched.update(followed_rows)
    if ctx.live_kol_affinity and n_kols:
        rows = model.kols.rows(list(ctx.live_kol_affinity.keys()))
        vals = squash(np.fromiter(ctx.live_kol_affinity.values(), dtype=np.float32, count=len(rows)))
        # a handful of KOLs: scalar float32 updates cost less than masked numpy ones
        for row, val in zip(rows.tolist(), vals.tolist(), strict=True):
            if row < 0:
                continue
            touched.add(row)
            if val >= 0:  # positive engagement lifts affinity to at least this
                if val > aff[row]:
                    aff[row] = val
            else:  # negative engagement subtracts
                aff[row] = min(max(aff[row] + np.float32(val), -1.0), 1.0)
    hidden = np.zeros(n_kols, dtype=bool)
    hidden_rows: set[int] = set()
    if ctx.hidden_kols and n_kols:
        hidden_rows = {r for r in model.kols.rows(list(ctx.hidden_kols)).tolist() if r >= 0}
        if hidden_rows:
            hidden[list(hidden_rows)] = True

    fb_rows, fb_counts = _friends_bought(model, srow, friends_bought)
    trend_lookup, trend_rows = trending_rows(model, trending) if trend is None else trend
    return UserSignals(
        query=query,
        user_row=urow,
        social_row=srow,
        kol_affinity=aff,
        followed=followed,
        hidden_kols=hidden,
        fb_rows=fb_rows,
        fb_counts=fb_counts,
        trend_lookup=trend_lookup,
        trend_rows=trend_rows,
        trend_dense=trend_dense if trend_lookup is not None else None,
        followed_rows=followed_rows,
        hidden_rows=hidden_rows,
        affinity_rows=sorted(touched),
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

    def add(rows: np.ndarray, bit: int, may_miss: bool = False) -> None:
        """``may_miss``: FAISS pads a short result with -1 (other sources hold valid rows only)."""
        if may_miss:
            rows = np.asarray(rows, dtype=np.int64)
            rows = rows[rows >= 0]
        if len(rows):
            parts.append(rows)
            bits.append(bit)

    # 1. ANN on the user's embedding (the index's full search effort), neighbours of recently engaged
    #    items (a cheaper search: see CandidateCounts.similar_search_effort)
    if cc.ann_k > 0:
        if ann is not None:
            add(ann[1], ANN, may_miss=True)
        elif sig.user_row >= 0 and sig.query is not None:
            k = min(model.n_items, cc.ann_k + min(n_filtered, MAX_EXTRA_ANN))
            table = model.user_neighbours
            if table is not None and k <= table.shape[1]:  # searched when the run was built
                add(table[sig.user_row, :k], ANN, may_miss=True)
            else:
                add(search_ids(model.index, sig.query, k)[0], ANN, may_miss=True)
    if cc.similar_to_recent > 0 and ctx.recent_items:
        recent = model.items.rows(ctx.recent_items[:20])
        recent = recent[recent >= 0]
        if len(recent):
            k = min(model.n_items, cc.similar_to_recent + len(recent) + min(n_filtered, MAX_EXTRA_ANN))
            query = _mean_row(model.item_emb.take(recent, axis=0))
            add(search_ids(model.index, query, k, effort=cc.similar_search_effort)[0], SIMILAR, may_miss=True)

    # 2. fresh posts of followed and high-affinity KOLs
    if cc.followed_kol_posts > 0 and len(model.post_ids):
        hidden = sig.hidden_rows
        followed = [r for r in sig.followed_rows if r not in hidden]
        # top positive affinity among KOLs neither followed nor hidden (ties: lower row first); only
        # affinity_rows can be non-zero, so the other (tens of thousands of) KOLs are never looked at
        skip = hidden.union(sig.followed_rows)
        cand = [r for r in sig.affinity_rows if r not in skip]
        top_aff: list[int] = []
        if cand and cc.affinity_kols > 0:
            vals = sig.kol_affinity[cand].tolist()
            positive = [(r, v) for r, v in zip(cand, vals, strict=True) if v > 0]
            positive.sort(key=lambda rv: -rv[1])  # stable
            top_aff = [r for r, _ in positive[: cc.affinity_kols]]
        for kol_rows, bit in ((followed, FOLLOWED), (top_aff, AFFINITY)):
            # newest posts_per_kol per KOL (kol_posts rows are newest first), then newest overall
            posts = model.kol_posts.heads(kol_rows, cc.posts_per_kol)
            if not len(posts):
                continue
            if len(posts) > cc.followed_kol_posts:  # (else the order does not matter: all are added)
                posts = posts[(-model.post_created_at[posts]).argsort(kind="stable")][: cc.followed_kol_posts]
            add(model.post_item[posts], bit)

    # 3. items bought by friends in the share graph
    if cc.friends_bought > 0 and len(sig.fb_rows):
        fb = sig.fb_rows
        if len(fb) > cc.friends_bought:  # the most-bought ones (else all: their order does not matter)
            fb = fb[(-sig.fb_counts).argsort(kind="stable")][: cc.friends_bought]
        add(fb, FRIENDS)

    # 4. trending (service) or popular (run) items
    if cc.trending_k > 0:
        add(sig.trend_rows[: cc.trending_k + min(n_filtered, MAX_EXTRA_ANN)], TRENDING)

    # 5. exploration: newest posts of small creators the user does not follow
    explore = _EMPTY
    if cc.explore_slots > 0 and len(model.post_ids):
        pool = model.explore_pool(variant.explore_max_followers, size=max(50, 25 * cc.explore_slots))
        explore = pool
        if sig.followed_rows or sig.hidden_rows:
            kol = model.post_kol[pool]
            explore = pool[~(sig.followed[kol] | sig.hidden_kols[kol])]
        add(model.post_item[explore], EXPLORE)

    if not parts:
        return CandidateSet(_EMPTY, np.zeros(0, dtype=np.int64), explore)
    return CandidateSet(*union_sources(parts, bits), explore)


def union_sources(parts: list[np.ndarray], bits: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique rows, OR of the source bits of each row) over ``parts[i]`` proposed by ``bits[i]``.

    One sort of ``row << 8 | bit`` keys (bits < 256) instead of ``np.unique(return_inverse)`` plus
    ``np.bitwise_or.at``: the same answer in half the numpy calls."""
    flags = np.array(bits, dtype=np.int64).repeat([len(p) for p in parts])
    key = np.concatenate(parts) << 8
    key |= flags
    key.sort()
    rows = key >> 8
    starts = run_starts(rows).nonzero()[0]
    return rows[starts], np.bitwise_or.reduceat(key & 0xFF, starts)

"""Scoring: a variant-weighted mix of per-request-normalised signals, and the best post per item.

Why normalise per request: the model's dot products have no fixed scale across runs or users, so
they are min-max scaled over this request's candidates; the other signals are already in [0, 1]
(affinity squashed, trust = n/(1+n) friends, trending relative to the top item, freshness a half-life
decay). Choosing the post is part of scoring: of all KOLs who posted a product, the one with the
best affinity + creator-category fit + freshness promotes it (one product once, best post kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking.candidates import UserSignals, friends_count
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.filters import in_sorted
from recsys.ranking.variants import RankingVariant

SECONDS_PER_DAY = 86_400.0


@dataclass
class Scored:
    """Aligned arrays over the surviving candidates (one row per item)."""

    items: np.ndarray
    sources: np.ndarray
    score: np.ndarray
    post: np.ndarray
    """Post index promoting the item, -1 when the item has no post."""
    kol: np.ndarray
    """KOL row of that post, -1 when none."""
    item_part: np.ndarray
    kol_affinity: np.ndarray
    trust_count: np.ndarray
    trend: np.ndarray

    def take(self, mask_or_idx: np.ndarray) -> Scored:
        return Scored(**{k: v[mask_or_idx] for k, v in self.__dict__.items()})


def normalised_dot(model: FeedModel, query: np.ndarray | None, items: np.ndarray) -> np.ndarray:
    if query is None or not len(items):
        return np.zeros(len(items), dtype=np.float32)
    dots = model.item_emb[items] @ query
    lo, hi = float(dots.min()), float(dots.max())
    if hi - lo <= 1e-12:
        return np.zeros(len(items), dtype=np.float32)
    return ((dots - lo) / (hi - lo)).astype(np.float32)


def trend_signal(
    model: FeedModel, trend_lookup: tuple[np.ndarray, np.ndarray] | None, items: np.ndarray
) -> np.ndarray:
    """Service trending score when given (0 for items not trending), else log-scaled run popularity
    relative to the top item."""
    if trend_lookup is not None:
        rows, vals = trend_lookup
        if not len(items):
            return np.zeros(0, dtype=np.float32)
        pos = np.minimum(np.searchsorted(rows, items), len(rows) - 1)
        return np.where(rows[pos] == items, vals[pos], 0.0).astype(np.float32)
    top = float(model.item_popularity.max()) if model.n_items else 0.0
    if top <= 0:
        return np.zeros(len(items), dtype=np.float32)
    return (np.log1p(np.maximum(model.item_popularity[items], 0)) / np.log1p(top)).astype(np.float32)


def best_per_owner(owner: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Index of the highest ``score`` within each run of equal ``owner`` values (``owner`` sorted
    ascending, as ``_Csr.gather`` returns it); the first one wins a tie."""
    if not len(owner):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    top = np.maximum.reduceat(score, starts)
    group = np.cumsum(np.r_[False, owner[1:] != owner[:-1]])
    is_top = score >= top[group]
    hit = np.flatnonzero(is_top)
    first = np.r_[True, group[hit][1:] != group[hit][:-1]]
    return hit[first]


def score_candidates(
    model: FeedModel,
    variant: RankingVariant,
    sig: UserSignals,
    items: np.ndarray,
    sources: np.ndarray,
    hidden_cats: np.ndarray,
    now: float,
    forced_posts: np.ndarray | None = None,
) -> Scored:
    """Score ``items``; with ``forced_posts`` (aligned to items) the promoting post is fixed, not chosen.

    Items whose every post is by a hidden KOL are dropped."""
    w = variant.weights
    n = len(items)
    item_part = normalised_dot(model, sig.query, items)
    trend = trend_signal(model, sig.trend_lookup, items)
    trust_count = friends_count(sig, items)
    trust = trust_count / (1.0 + trust_count)

    post = np.full(n, -1, dtype=np.int64)
    kol = np.full(n, -1, dtype=np.int64)
    kol_part = np.zeros(n, dtype=np.float32)
    keep = np.ones(n, dtype=bool)
    if len(model.post_ids) and n:
        if forced_posts is not None:
            owner = np.arange(n, dtype=np.int64)
            pidx = np.asarray(forced_posts, dtype=np.int64)
        else:
            owner, entries = model.item_posts.gather(items)
            pidx = model.item_posts.indices[entries]
        had_posts = np.bincount(owner, minlength=n) > 0
        pk = model.post_kol[pidx]
        ok = ~sig.hidden_kols[pk]
        owner, pidx, pk = owner[ok], pidx[ok], pk[ok]
        cat = model.item_category[items[owner]]
        if model.kol_category_fit.shape[1] and len(cat):
            fit = np.where(cat >= 0, model.kol_category_fit[pk, np.maximum(cat, 0)], 0.0)
        else:
            fit = np.zeros(len(pk), dtype=np.float32)
        age_days = np.maximum(now - model.post_created_at[pidx], 0.0) / SECONDS_PER_DAY
        fresh = np.power(0.5, age_days / variant.freshness_half_life_days)
        pscore = w.kol_affinity * sig.kol_affinity[pk] + w.category_fit * fit + w.freshness * fresh
        best = best_per_owner(owner, pscore) if forced_posts is None else np.arange(len(owner))
        post[owner[best]] = pidx[best]
        kol[owner[best]] = pk[best]
        kol_part[owner[best]] = pscore[best]
        keep = ~had_posts | (post >= 0)

    if n and len(sig.kol_affinity):
        aff = np.where(kol >= 0, sig.kol_affinity[np.maximum(kol, 0)], 0.0)
    else:
        aff = np.zeros(n, dtype=np.float32)
    demote = np.zeros(n, dtype=np.float32)
    if variant.hide_demotion > 0:
        if len(hidden_cats):
            demote += variant.hide_demotion * in_sorted(model.item_category[items], hidden_cats)
        demote += variant.hide_demotion * (aff < 0)
    score = w.item_score * item_part + kol_part + w.trust * trust + w.trending * trend - demote
    scored = Scored(
        items=items,
        sources=sources,
        score=score.astype(np.float32),
        post=post,
        kol=kol,
        item_part=item_part,
        kol_affinity=aff.astype(np.float32),
        trust_count=trust_count,
        trend=trend.astype(np.float32),
    )
    return scored if keep.all() else scored.take(keep)

"""Scoring: a variant-weighted mix of per-request-normalised signals, and the best post per item.

Why normalise per request: the model's dot products have no fixed scale across runs or users, so
they are min-max scaled over this request's candidates; the other signals are already in [0, 1]
(affinity squashed, trust = n/(1+n) friends, trending relative to the top item, freshness a half-life
decay). Choosing the post is part of scoring: of all KOLs who posted a product, the one with the
best affinity + creator-category fit + freshness promotes it (one product once, best post kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from recsys.ranking.array_ops import run_starts
from recsys.ranking.candidates import UserSignals, friends_count
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.filters import in_sorted
from recsys.ranking.variants import RankingVariant

SECONDS_PER_DAY = 86_400.0
_EMPTY = np.zeros(0, dtype=np.int64)


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

    def take(self, mask_or_idx: np.ndarray | slice) -> Scored:
        return Scored(**{k: v[mask_or_idx] for k, v in self.__dict__.items()})


def normalised_dot(model: FeedModel, query: np.ndarray | None, items: np.ndarray) -> np.ndarray:
    if query is None or not len(items):
        return np.zeros(len(items), dtype=np.float32)
    dots = model.item_emb.take(items, axis=0) @ query  # take: twice as fast as [] for 2-D rows
    lo, hi = float(np.minimum.reduce(dots)), float(np.maximum.reduce(dots))  # dots.min(), dots.max()
    if hi - lo <= 1e-12:
        return np.zeros(len(items), dtype=np.float32)
    dots -= lo  # in place, float32 like (dots - lo) / (hi - lo)
    dots /= hi - lo
    return dots.astype(np.float32, copy=False)


def trend_signal(
    model: FeedModel,
    trend_lookup: tuple[np.ndarray, np.ndarray] | None,
    items: np.ndarray,
    dense: np.ndarray | None = None,
) -> np.ndarray:
    """Service trending score when given (0 for items not trending), else log-scaled run popularity
    relative to the top item. ``dense`` = the service's scores per item row (``trend_lookup``
    spread out), when the caller has them: one gather instead of a search."""
    if dense is not None:
        return dense[items]
    if trend_lookup is not None:
        rows, vals = trend_lookup
        if not len(items):
            return np.zeros(0, dtype=np.float32)
        pos = rows.searchsorted(items)
        np.minimum(pos, len(rows) - 1, out=pos)
        return np.where(rows[pos] == items, vals[pos], 0.0).astype(np.float32, copy=False)
    return model.popularity_trend[items]  # computed once per run


def best_per_owner(owner: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Index of the highest ``score`` within each run of equal ``owner`` values (``owner`` sorted
    ascending, as ``FeedModel.item_posts_and_category`` returns it); the first one wins a tie. (A
    group whose maximum is NaN gets no index.)"""
    if not len(owner):
        return np.zeros(0, dtype=np.int64)
    first = run_starts(owner)  # first entry of each owner's run
    top = np.maximum.reduceat(score, first.nonzero()[0])
    group = first.cumsum() - 1
    hit = (score >= top[group]).nonzero()[0]
    return hit[run_starts(group[hit])]


Group = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""(item rows, source bits, forced post per item or None) of one batch of candidates to score."""


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
    return score_groups(model, variant, sig, [(items, sources, forced_posts)], hidden_cats, now)[0]


def score_groups(
    model: FeedModel,
    variant: RankingVariant,
    sig: UserSignals,
    groups: list[Group],
    hidden_cats: np.ndarray,
    now: float,
) -> list[Scored]:
    """``score_candidates`` of each group, computed in one pass over all of them.

    Why: a request scores its main candidates and its exploration posts; the numpy calls cost more
    than the arithmetic on a few hundred rows, so both share one set of calls. Each group's result
    equals a separate call: the model score is min-max normalised (and its dot products computed)
    per group, the best post is chosen per item within a group, everything else is per item."""
    w = variant.weights
    sizes = [len(g[0]) for g in groups]
    ends = list(accumulate(sizes))
    n = ends[-1] if ends else 0
    items = np.concatenate([g[0] for g in groups]) if len(groups) > 1 else np.asarray(groups[0][0])
    sources = np.concatenate([g[1] for g in groups]) if len(groups) > 1 else groups[0][1]
    dots = [normalised_dot(model, sig.query, g[0]) for g in groups]
    item_part = np.concatenate(dots) if len(dots) > 1 else dots[0]
    trend = trend_signal(model, sig.trend_lookup, items, sig.trend_dense)
    trust_count = friends_count(sig, items)
    trust = trust_count / (1.0 + trust_count)
    # category per item, and (groups that choose their post) the item's candidate posts
    spans: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    cats: list[np.ndarray] = []
    for g_items, _, forced in groups:
        if forced is None and len(g_items):
            g_owner, entries, lens, g_cat = model.item_posts_and_category(g_items)
            spans.append((g_owner, entries, lens))
        else:
            spans.append(None)
            g_cat = model.item_category[g_items] if len(model.item_category) else np.full(len(g_items), -1)
        cats.append(g_cat)
    item_cat = np.concatenate(cats) if len(cats) > 1 else cats[0]

    post = np.full(n, -1, dtype=np.int64)
    kol = np.full(n, -1, dtype=np.int64)
    kol_part = np.zeros(n, dtype=np.float32)
    aff = np.zeros(n, dtype=np.float32)
    keep: np.ndarray | None = None  # None = keep all
    if len(model.post_ids) and n:
        # per candidate post: owner (item position), post index, KOL row, fit, post time
        columns: list[list[np.ndarray]] = [[], [], [], [], []]
        counts: list[tuple[np.ndarray, int]] = []  # (posts per item, offset) of gathered groups
        n_with_posts = 0
        for (_, _, forced), span, size, end in zip(groups, spans, sizes, ends, strict=True):
            if forced is not None:
                p = np.asarray(forced, dtype=np.int64)
                g_owner = np.arange(end - size, end, dtype=np.int64)
                g_cols = (g_owner, p, model.post_kol[p], model.post_fit[p], model.post_created_at[p])
                n_with_posts += size
            elif span is not None:
                g_owner, entries, lens = span
                g_owner = g_owner + (end - size) if end > size else g_owner
                g_cols = (g_owner, *model.item_post_facts(entries))
                counts.append((lens, end - size))
                n_with_posts += int(np.count_nonzero(lens))
            else:
                continue
            for column, part in zip(columns, g_cols, strict=True):
                column.append(part)
        owner, pidx, pk, fit, created = (
            np.concatenate(column) if len(column) > 1 else column[0] for column in columns
        )
        if sig.hidden_rows:
            hidden = sig.hidden_kols[pk]
            if hidden.any():
                ok = ~hidden
                owner, pidx, pk, fit, created = owner[ok], pidx[ok], pk[ok], fit[ok], created[ok]
        age_days = now - created
        if not now >= model.newest_post_time:  # else no post is newer than now: all ages are >= 0
            np.maximum(age_days, 0.0, out=age_days)
        age_days /= SECONDS_PER_DAY
        age_days /= variant.freshness_half_life_days
        fresh = np.power(0.5, age_days)
        pk_aff = sig.kol_affinity[pk]
        pscore = w.kol_affinity * pk_aff + w.category_fit * fit + w.freshness * fresh
        # each group's entries are one run of ``owner`` (sorted): choose the best post within it
        bounds = owner.searchsorted(ends).tolist() if len(groups) > 1 else [len(owner)]
        best_parts: list[np.ndarray] = []
        lo = 0
        for (_, _, forced), hi in zip(groups, bounds, strict=True):
            if forced is not None:
                best_parts.append(np.arange(lo, hi))
            elif hi > lo:
                best_parts.append(lo + best_per_owner(owner[lo:hi], pscore[lo:hi]))
            lo = hi
        best = np.concatenate(best_parts) if best_parts else _EMPTY
        best_owner = owner[best]
        post[best_owner] = pidx[best]
        kol[best_owner] = pk[best]
        kol_part[best_owner] = pscore[best]
        aff[best_owner] = pk_aff[best]
        if len(best_owner) < n_with_posts:  # some item lost its post: keep it only if it never had one
            keep = post >= 0
            for lens, offset in counts:
                keep[(lens == 0).nonzero()[0] + offset] = True

    # negative feedback: the category of a hidden item, or a KOL the user reacts to negatively
    demote: np.ndarray | None = None
    if variant.hide_demotion > 0:
        for hit in (in_sorted(item_cat, hidden_cats), aff < 0):
            if hit.any():
                if demote is None:
                    demote = np.zeros(n, dtype=np.float32)
                demote += variant.hide_demotion * hit
    score = w.item_score * item_part + kol_part + w.trust * trust + w.trending * trend
    if demote is not None:  # (subtracting zeros changes nothing)
        score -= demote
    scored = Scored(
        items=items,
        sources=sources,
        score=score.astype(np.float32),
        post=post,
        kol=kol,
        item_part=item_part,
        kol_affinity=aff,
        trust_count=trust_count,
        trend=trend,
    )
    if len(groups) == 1:
        return [scored if keep is None else scored.take(keep)]
    out = []
    for size, end in zip(sizes, ends, strict=True):
        part = scored.take(slice(end - size, end))
        out.append(
            part if keep is None or keep[end - size : end].all() else part.take(keep[end - size : end])
        )
    return out

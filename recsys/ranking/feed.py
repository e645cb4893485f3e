"""The feed ranker the web service calls: candidates → filters → score → diversity → reasons.

Synchronous, CPU-only and allocation-light (numpy over a few hundred candidates, one FAISS search)
so a request costs a few milliseconds. It never raises for an unknown or brand-new user: without an
embedding the page is built from followed creators, friends' purchases, trending/popular items and
exploration, and a popular backfill keeps the page full.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from recsys.index import set_search_threads, set_thread_omp_threads
from recsys.ranking import candidates as C
from recsys.ranking.array_ops import run_starts
from recsys.ranking.context import FeedEntry, UserContext
from recsys.ranking.diversity import PageBuilder
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.filters import excluded_rows, hidden_categories, keep_mask
from recsys.ranking.reasons import reasons_for
from recsys.ranking.scoring import Scored, score_candidates, score_groups
from recsys.ranking.variants import RankingVariant

_EMPTY = np.zeros(0, dtype=np.int64)

_SOURCE_PRIORITY: tuple[tuple[int, str], ...] = (
    (C.FOLLOWED, "followed_kol"),
    (C.AFFINITY, "kol_affinity"),
    (C.FRIENDS, "friends_bought"),
    (C.ANN, "ann"),
    (C.SIMILAR, "similar"),
    (C.TRENDING, "trending"),
    (C.EXPLORE, "explore"),
    (C.POPULAR, "popular"),
)


def source_name(bits: int) -> str:
    if 0 <= bits < len(_SOURCE_NAMES):
        return _SOURCE_NAMES[bits]
    return _source_name(bits)


def _source_name(bits: int) -> str:
    for bit, name in _SOURCE_PRIORITY:
        if bits & bit:
            return name
    return "popular"


_SOURCE_NAMES = tuple(_source_name(bits) for bits in range(2 * max(bit for bit, _ in _SOURCE_PRIORITY)))
"""``source_name`` of every combination of source bits, looked up instead of scanned per entry."""


EXPLORE_PAGE = 20
"""``explore_slots`` are per page of this size; shorter pages get proportionally fewer."""


def explore_count(limit: int, slots: int) -> int:
    """Exploration entries on a page of ``limit``: ``slots`` per 20 items, rounded up, never the
    whole page, never more than ``slots`` (a 5-item page with 2 slots explores once, not twice)."""
    if slots <= 0 or limit <= 1:
        return 0
    return min(slots, -(-slots * limit // EXPLORE_PAGE), limit - 1)


def explore_positions(limit: int, n_explore: int) -> list[int]:
    """Evenly spread page positions for exploration entries (never the very first slot)."""
    return [min(limit - 1, (i + 1) * limit // (n_explore + 1)) for i in range(n_explore)]


def _first_of_each(values: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each distinct value, ordered by value (``np.unique``'s
    ``return_index``, without its overhead)."""
    if len(values) < 2:
        return np.arange(len(values))
    order = values.argsort(kind="stable")
    return order[run_starts(values[order])]


class FeedRanker:
    """Ranks one user's page per call; safe to share between threads (it only reads the model).

    ``search_threads`` sets FAISS's OpenMP threads and the BLAS threads for the whole process
    (default 1, :func:`recsys.index.set_search_threads`): a request searches with one or two query
    vectors and multiplies a few hundred rows, where fan-out only adds synchronisation cost — on a
    busy 2-core machine it measured several times slower. Pass None to leave them alone."""

    def __init__(self, model: FeedModel, search_threads: int | None = 1) -> None:
        self.model = model
        self._search_threads = search_threads
        self._trend_memo: tuple[list[tuple[int, float]] | None, C.TrendRows, np.ndarray | None] | None = None
        if search_threads is not None:
            set_search_threads(search_threads)

    def _trend_rows(self, trending: list[tuple[int, float]] | None) -> tuple[C.TrendRows, np.ndarray | None]:
        """Trending in rows, reused while the caller passes the very same list object (the service's
        trending cache hands every request the same list until it refreshes; nobody mutates it).

        From the second request with the same list on, also its scores per item row (an array over
        the catalog, built once: scoring then gathers instead of searching). Not on the first, so a
        caller passing a new list every time never pays for building it."""
        memo = self._trend_memo  # one read: another thread may replace it meanwhile
        if memo is not None and memo[0] is trending:
            out, dense = memo[1], memo[2]
            if dense is None and out[0] is not None:
                dense = C.dense_trend(self.model, out[0])
                self._trend_memo = (trending, out, dense)
            return out, dense
        out = C.trending_rows(self.model, trending)
        self._trend_memo = (trending, out, None)
        return out, None

    def rank(
        self,
        ctx: UserContext,
        variant: RankingVariant,
        limit: int,
        exclude: Iterable[int] = frozenset(),
        trending: list[tuple[int, float]] | None = None,
        friends_bought: dict[int, int] | None = None,
        now: float | None = None,
        ann: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[FeedEntry]:
        """Up to ``limit`` entries, best first. ``now`` (unix seconds) defaults to the newest post's
        time; ``ann`` = precomputed (scores, ids) of the user's ANN search (batch evaluation)."""
        m = self.model
        if self._search_threads is not None:  # per calling thread (see set_thread_omp_threads)
            set_thread_omp_threads(self._search_threads)
        if limit <= 0 or m.n_items == 0:
            return []
        now = m.reference_time if now is None else float(now)
        trend, trend_dense = self._trend_rows(trending)
        sig = C.user_signals(m, ctx, variant, trending, friends_bought, trend=trend, trend_dense=trend_dense)
        excluded = excluded_rows(m, ctx, exclude)
        cand = C.generate(m, ctx, variant, sig, n_filtered=len(excluded), ann=ann)
        hidden_cats = hidden_categories(m, ctx)

        # exploration posts' items are filtered like the rest; one keep_mask call covers both
        explore_posts = cand.explore_posts
        explore_items = m.post_item[explore_posts] if len(explore_posts) else _EMPTY
        keep = keep_mask(m, np.concatenate([cand.items, explore_items]), excluded)
        n_cand = len(cand.items)
        main_sel = keep[:n_cand] & (cand.sources != C.EXPLORE)
        keep_explore = keep[n_cand:]
        explore_posts, explore_items = explore_posts[keep_explore], explore_items[keep_explore]
        # one post per item (the pool is newest-first, so the first occurrence is the newest)
        first = _first_of_each(explore_items)
        explore_posts, explore_items = explore_posts[first], explore_items[first]
        scored, explore = score_groups(
            m,
            variant,
            sig,
            [
                (cand.items[main_sel], cand.sources[main_sel], None),
                (explore_items, np.full(len(explore_items), C.EXPLORE, dtype=np.int64), explore_posts),
            ],
            hidden_cats,
            now,
        )

        page = PageBuilder(variant.per_kol_cap, variant.per_category_cap, m.item_category)
        n_explore = explore_count(limit, variant.candidates.explore_slots) if len(explore.items) else 0
        # exploration slots are reserved first (their items leave the main pool), then the rest fills
        explore_idx = page.pick(explore, n_explore) if n_explore else []
        main_idx = page.pick(scored, limit - len(explore_idx))
        entries = self._entries(scored, main_idx, sig, variant, explore=False)
        if len(entries) + len(explore_idx) < limit:
            entries += self._backfill(
                page, sig, variant, excluded, hidden_cats, now, limit - len(entries) - len(explore_idx)
            )
        explore_entries = self._entries(explore, explore_idx, sig, variant, explore=True)
        for pos, entry in zip(explore_positions(limit, len(explore_idx)), explore_entries, strict=True):
            entries.insert(min(pos, len(entries)), entry)
        return entries[:limit]

    # ------------------------------------------------------------------ helpers
    def _backfill(
        self,
        page: PageBuilder,
        sig: C.UserSignals,
        variant: RankingVariant,
        excluded: np.ndarray,
        hidden_cats: np.ndarray,
        now: float,
        n: int,
    ) -> list[FeedEntry]:
        """Popular items beyond the trending candidates, so even a cold user gets a full page."""
        m = self.model
        out: list[FeedEntry] = []
        start = 0
        pool = m.popular_items
        while len(out) < n and start < len(pool):
            rows = pool[start : start + max(4 * n, 256)]
            start += len(rows)
            rows = rows[keep_mask(m, rows, excluded)]
            if not len(rows):
                continue
            scored = score_candidates(
                m, variant, sig, rows, np.full(len(rows), C.POPULAR, dtype=np.int64), hidden_cats, now
            )
            out += self._entries(scored, page.pick(scored, n - len(out)), sig, variant, explore=False)
        return out

    def _entries(
        self, s: Scored, idx: list[int], sig: C.UserSignals, variant: RankingVariant, explore: bool
    ) -> list[FeedEntry]:
        """Feed entries for rows ``idx`` of ``s``. Fields are read with ``ndarray.item`` (a plain
        Python value, no numpy scalar in between): for a page of tens of entries that is cheaper than
        converting whole arrays."""
        m = self.model
        item_ids, post_ids, kol_ids, followed = m.items.ids, m.post_ids, m.kols.ids, sig.followed
        item_category = m.item_category if len(m.item_category) else None
        kol_labels = m.labels.get("kol") or None
        out = []
        for i in idx:
            item = s.items.item(i)
            post = s.post.item(i)
            kol = s.kol.item(i)
            kol_id = kol_ids.item(kol) if kol >= 0 else None
            cat = item_category.item(item) if item_category is not None else -1
            sources = s.sources.item(i)
            # positional calls below (in parameter order): keywords cost a third of each call
            reasons = reasons_for(
                variant,
                sources,
                kol_id,
                kol >= 0 and followed.item(kol),  # followed
                s.kol_affinity.item(i),
                s.trust_count.item(i),  # friends
                s.item_part.item(i),
                s.trend.item(i),
                m.categories[cat] if cat >= 0 else None,  # category
                explore,
                kol_labels,
            )
            item_id = item_ids.item(item)
            post_id = post_ids.item(post) if post >= 0 else None
            source = "explore" if explore else source_name(sources)
            out.append(FeedEntry(item_id, post_id, kol_id, s.score.item(i), reasons, source))
        return out

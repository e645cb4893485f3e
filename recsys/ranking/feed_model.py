"""Everything the feed ranker reads from a run directory, turned into fast lookup structures.

Why a separate object: loading (checksums, Parquet, sorting posts) is slow and happens once per
model reload; ranking happens per request and must only index numpy arrays and small dicts. Every
world table is optional — a run trained on a LightGCN-format dataset (e.g. Gowalla) has only
embeddings and ids, and the ranker then degrades to ANN + popularity.

The seams: reading the run directory (``run_reader``), building the world structures
(``world_tables``), the structures themselves (``recsys.row_maps``), the explore pool (``explore``)
and the bit-packed post facts (``packed_facts``) are modules of their own; this one holds the model.

Conventions: *rows* are dense indices into the arrays below; *ids* are the dataset's external ids.
Posts, KOLs and categories are dense too (``post_*`` arrays, ``kol_ids``, ``categories``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from recsys import artifacts as A
from recsys.index import build_index
from recsys.ranking.array_ops import squash
from recsys.ranking.explore import small_creator_posts
from recsys.ranking.packed_facts import PackedPostFacts
from recsys.ranking.run_reader import read_run_dir
from recsys.ranking.world_tables import load_world_tables
from recsys.row_maps import EMPTY_F32, EMPTY_I64, SHORT_LIST, Csr, IdMap


@dataclass
class FeedModel:
    """Immutable per-run state of the ranker. Build with :meth:`load` (or :meth:`from_arrays` in tests)."""

    run_dir: Path | None
    manifest: A.Manifest | None
    user_emb: np.ndarray
    item_emb: np.ndarray
    users: IdMap
    items: IdMap
    item_popularity: np.ndarray
    index: faiss.Index
    # --- item attributes, aligned to item rows ---
    categories: list[str] = field(default_factory=list)
    item_category: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    """Category code per item row (index into ``categories``), -1 when unknown."""
    item_in_stock: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    item_price: np.ndarray = field(default_factory=lambda: EMPTY_F32.copy())
    # --- KOLs and posts ---
    kols: IdMap = field(default_factory=lambda: IdMap(EMPTY_I64))
    kol_followers: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    kol_category_fit: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    """(n_kols, n_categories) fit in [0, 1], relative to the KOL's best category; from
    kol_category_fit.parquet, else 1.0 for the KOL's declared verticals."""
    post_ids: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    post_kol: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    """KOL row of each post."""
    post_item: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    """Item row of each post."""
    post_created_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    item_posts: Csr = field(default_factory=lambda: Csr.empty(0))
    """Item row → post indices: the newest post of each KOL that posted the item (best post per KOL)."""
    kol_posts: Csr = field(default_factory=lambda: Csr.empty(0))
    """KOL row → post indices, newest first."""
    reference_time: float = 0.0
    """'Now' for freshness when the caller gives none: the newest post's timestamp."""
    # --- social, keyed by user row of the ``social_users`` map (users without embeddings included) ---
    social_users: IdMap = field(default_factory=lambda: IdMap(EMPTY_I64))
    user_follows: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → followed KOL rows."""
    user_friends: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → friend social-user rows (friends table ∪ share edges, both directions)."""
    user_affinity: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → KOL rows by static affinity, descending (values = affinity)."""
    user_buys: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → bought item rows (from social/buys.parquet when the run exports it)."""
    popular_items: np.ndarray = field(default_factory=lambda: EMPTY_I64.copy())
    """All item rows by popularity, descending: trending fallback and cold-start backfill."""
    user_neighbours: np.ndarray | None = None
    """(n_users, k) int32: each user row's first ``k`` item rows in ``index``, best first (-1 pads), so
    the feed reads them instead of searching (:mod:`recsys.user_neighbours`); None: search."""
    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    """``{kind: {key: external id}}`` of the run's string ids (``labels.parquet``; kinds user, item,
    kol, post); integer ids have no entry and print as their decimal (``recsys.ids.key_label``)."""

    # ------------------------------------------------------------------ construction
    @property
    def n_items(self) -> int:
        return int(self.item_emb.shape[0])

    @property
    def n_kols(self) -> int:
        return len(self.kols)

    @property
    def has_world(self) -> bool:
        """True when any world table (catalog or social) is loaded; False for embeddings-only runs."""
        return bool(
            len(self.post_ids)
            or len(self.categories)
            or len(self.social_users)
            or (len(self.item_in_stock) and not self.item_in_stock.all())
        )

    @classmethod
    def load(cls, run_dir: str | Path, build_missing_index: bool = True) -> FeedModel:
        """Verify checksums (ArtifactError on a corrupt run), then load arrays and optional tables."""
        c = read_run_dir(run_dir, build_missing_index)
        return cls.from_arrays(
            user_emb=c.user_emb,
            item_emb=c.item_emb,
            user_ids=c.user_ids,
            item_ids=c.item_ids,
            item_popularity=c.item_popularity,
            index=c.index,
            tables=c.tables,
            run_dir=c.run_dir,
            manifest=c.manifest,
            labels=c.labels,
            user_neighbours=c.user_neighbours,
        )

    @classmethod
    def from_arrays(
        cls,
        user_emb: np.ndarray,
        item_emb: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        item_popularity: np.ndarray | None = None,
        index: faiss.Index | None = None,
        tables: dict[str, dict[str, np.ndarray]] | None = None,
        run_dir: Path | None = None,
        manifest: A.Manifest | None = None,
        source: str = "run",
        labels: dict[str, dict[int, str]] | None = None,
        user_neighbours: np.ndarray | None = None,
    ) -> FeedModel:
        """Build from in-memory arrays; ``tables`` maps table name → column name → array;
        ``labels`` as :func:`recsys.artifacts.load_labels` returns them (None: integer ids only)."""
        where = str(run_dir) if run_dir is not None else source
        user_emb = np.ascontiguousarray(user_emb, dtype=np.float32)
        item_emb = np.ascontiguousarray(item_emb, dtype=np.float32)
        if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
            raise A.ArtifactError(
                f"{where}: user_emb {user_emb.shape} and item_emb {item_emb.shape} must be 2-D, equal width"
            )
        if len(user_ids) != user_emb.shape[0]:
            raise A.ArtifactError(f"{where}: {len(user_ids)} user ids for {user_emb.shape[0]} user rows")
        if len(item_ids) != item_emb.shape[0]:
            raise A.ArtifactError(f"{where}: {len(item_ids)} item ids for {item_emb.shape[0]} item rows")
        n_items = item_emb.shape[0]
        if item_popularity is None:
            pop = np.zeros(n_items, dtype=np.float32)
        else:
            pop = np.asarray(item_popularity, dtype=np.float32).reshape(-1)
            if len(pop) != n_items:
                raise A.ArtifactError(f"{where}: item_popularity has {len(pop)} entries for {n_items} items")
        if user_neighbours is not None and (
            user_neighbours.ndim != 2 or user_neighbours.shape[0] != user_emb.shape[0]
        ):
            raise A.ArtifactError(
                f"{where}: user_neighbours {user_neighbours.shape} does not match {user_emb.shape[0]} users"
            )
        if index is None:
            if user_neighbours is not None:
                raise A.ArtifactError(f"{where}: user_neighbours without the index they were searched in")
            index = build_index(item_emb, "Flat")
        popular = np.argsort(-pop, kind="stable").astype(np.int64)
        model = cls(
            run_dir=run_dir,
            manifest=manifest,
            user_emb=user_emb,
            item_emb=item_emb,
            users=IdMap(user_ids),
            items=IdMap(item_ids),
            item_popularity=pop,
            index=index,
            item_category=np.full(n_items, -1, dtype=np.int64),
            item_in_stock=np.ones(n_items, dtype=bool),
            item_price=np.zeros(n_items, dtype=np.float32),
            popular_items=popular,
            user_neighbours=user_neighbours,
            labels={kind: dict((labels or {}).get(kind, {})) for kind in A.LABEL_KINDS},
        )
        load_world_tables(model, tables or {}, where)
        model._check_labels(where)
        model._derive()
        return model

    def _check_labels(self, where: str) -> None:
        """Every hashed item, KOL and post key must have its label: responses and reasons print the
        shop's own ids, and a key without one could only be shown as a meaningless number."""
        for kind, keys in (("item", self.items.ids), ("kol", self.kols.ids), ("post", self.post_ids)):
            hashed = keys[keys < 0]
            if not len(hashed):
                continue
            known = self.labels[kind]
            labelled = np.fromiter(known, dtype=np.int64, count=len(known))
            missing = hashed[~np.isin(hashed, labelled)]
            if len(missing):
                raise A.ArtifactError(
                    f"{where}: {len(missing)} {kind} id(s) are string ids without a label in "
                    f"{A.LABELS} (first key {int(missing[0])}); re-export the run"
                )

    def signals_off(self) -> list[str]:
        """The ranking signals this run cannot give, each with why: a shop that brought only events
        has no creators or friends, and its feed runs on the rest (the service logs this at start)."""
        off = []
        if not len(self.post_ids):
            off.append("KOL affinity (no creator posts in the run)")
        elif not len(self.user_follows.indices):
            off.append("followed creators (no follows in the run)")
        if not len(self.user_friends.indices):
            off.append("social proof (no friends or share edges in the run)")
        if not self.categories:
            off.append("categories (no item catalogue in the run)")
        return off

    def label(self, kind: str, key: int) -> str:
        """The external id (as the shop spells it) of one ``kind`` key: its label, else its decimal."""
        found = self.labels[kind].get(key)
        return found if found is not None else str(key)

    def item_categories(self, item_ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """Category name of each item key, None when the run does not know the item or its category
        (what the service stamps on logged events; short lists one by one, where numpy's per-call
        overhead would dominate: an event batch is usually one event)."""
        if len(item_ids) <= SHORT_LIST:
            return [self._item_category(int(i)) for i in item_ids]
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.size == 0:
            return []
        rows = self.items.rows(ids)
        n_codes = len(self.item_category)
        known = (rows >= 0) & (rows < n_codes)
        codes = np.where(known, self.item_category[np.where(known, rows, 0)] if n_codes else -1, -1)
        cats = self.categories
        return [cats[c] if 0 <= c < len(cats) else None for c in codes.tolist()]

    def _item_category(self, item_id: int) -> str | None:
        row = self.items.row(item_id)
        if not 0 <= row < len(self.item_category):
            return None
        code = int(self.item_category[row])
        return self.categories[code] if 0 <= code < len(self.categories) else None

    def friend_ids(self, user_id: int, limit: int) -> list[int]:
        """Keys of the user's friends in the run's share graph (at most ``limit``)."""
        if limit <= 0:
            return []
        row = self.social_users.row(user_id)
        if row < 0:
            return []
        friend_rows = self.user_friends.get(row)[:limit]
        return [int(x) for x in self.social_users.ids[friend_rows].tolist()]

    def item_posts_and_category(
        self, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """See :meth:`PackedPostFacts.item_posts_and_category` (``items`` must be valid rows)."""
        return self._packed.item_posts_and_category(items)

    def item_post_facts(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """See :meth:`PackedPostFacts.item_post_facts`."""
        return self._packed.item_post_facts(entries)

    def explore_pool(self, max_followers: int, size: int = 500) -> np.ndarray:
        """Newest posts (indices) of creators with at most ``max_followers`` followers (cached)."""
        if len(self.post_ids) == 0:
            return EMPTY_I64
        cached = self._explore_cache.get((max_followers, size))
        if cached is None:
            cached = small_creator_posts(
                self.posts_newest_first, self.kol_followers, self.post_kol, max_followers, size
            )
            self._explore_cache[(max_followers, size)] = cached
        return cached

    def __post_init__(self) -> None:
        self._explore_cache: dict[tuple[int, int], np.ndarray] = {}

    def _derive(self) -> None:
        """Per-run constants the ranker would otherwise recompute per request. Run once, by
        :meth:`from_arrays` (every FeedModel is built there) after the tables are loaded."""
        top = float(self.item_popularity.max()) if len(self.item_popularity) else 0.0
        # a numpy float64 on purpose: dividing float32 by it computes in float64, as per request before
        self.log1p_top_popularity: np.float64 | None = None if top <= 0 else np.float64(np.log1p(top))
        """log1p of the largest item popularity (the trend fallback's scale); None when it is <= 0."""
        scale = self.log1p_top_popularity
        self.popularity_trend = (
            np.zeros(len(self.item_popularity), dtype=np.float32)
            if scale is None
            else (np.log1p(np.maximum(self.item_popularity, 0)) / scale).astype(np.float32)
        )
        """Per item row: log1p(popularity) / log1p(top popularity), the trend signal without a
        service trending list (0 everywhere when no item is popular)."""
        created = self.post_created_at
        self.posts_newest_first = np.argsort(-created, kind="stable")
        """Post indices, newest first (ties: lower index first); :meth:`explore_pool` walks them."""
        self.newest_post_time = float(created.max()) if len(created) else float("-inf")
        """Latest post timestamp (NaN if any is NaN): at a later 'now' no post age is negative."""
        n_kols, n_cats = self.kol_category_fit.shape
        padded = np.zeros((n_kols, n_cats + 1), dtype=np.float32)
        padded[:, :n_cats] = self.kol_category_fit
        flat = padded.ravel()  # entry k * (n_cats + 1) + c = fit of KOL k to category c; c = -1 reads 0
        self.post_fit = (
            flat[self.post_kol * (n_cats + 1) + self.item_category[self.post_item]]
            if n_cats and len(self.post_kol)
            else np.zeros(len(self.post_kol), dtype=np.float32)
        )
        """Per post: its KOL's fit to its item's category (0 when the category is unknown)."""
        self._packed = PackedPostFacts.build(
            self.item_posts,
            self.item_category,
            self.n_items,
            self.post_created_at,
            self.post_kol,
            self.post_fit,
        )
        """What scoring reads of each item's posts, bit-packed for one row gather (``packed_facts``)."""
        values = self.user_affinity.values
        self.user_affinity_squashed = squash(values if values is not None else EMPTY_F32)
        """``squash`` of ``user_affinity.values`` (aligned with them)."""

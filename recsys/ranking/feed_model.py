"""Everything the feed ranker reads from a run directory, turned into fast lookup structures.

Why a separate object: loading (checksums, Parquet, sorting posts) is slow and happens once per
model reload; ranking happens per request and must only index numpy arrays and small dicts. Every
world table is optional — a run trained on a LightGCN-format dataset (e.g. Gowalla) has only
embeddings and ids, and the ranker then degrades to ANN + popularity.

Conventions: *rows* are dense indices into the arrays below; *ids* are the dataset's external ids.
Posts, KOLs and categories are dense too (``post_*`` arrays, ``kol_ids``, ``categories``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq

from recsys import artifacts as A
from recsys.index import INDEX_INFO, build_index, load_index
from recsys.schema import UNKNOWN_CATEGORY

log = logging.getLogger(__name__)

_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)


def squash(x: np.ndarray) -> np.ndarray:
    """Map an unbounded affinity to (-1, 1): x / (1 + |x|); NaN counts as 0, ±inf as ±1e6."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():  # nan_to_num's own checks cost more than this on short arrays
        x = np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
    return x / (1.0 + np.abs(x))


def run_starts(ordered: np.ndarray) -> np.ndarray:
    """True at the first element of each run of equal values of ``ordered`` (e.g. sorted rows)."""
    first = np.empty(len(ordered), dtype=bool)
    if len(ordered):
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return first


_SHORT_LIST = 16
"""Id lists up to this long are looked up one by one in Python: cheaper than numpy's per-call cost."""


class IdMap:
    """An id key (recsys/ids.py) → dense row via a sorted copy and searchsorted (vectorised, -1 if absent).

    Public: the model's id maps (users, items, creators, posts) are read by the ranker, the service and
    the tests alike."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self._order = np.argsort(self.ids, kind="stable").astype(np.int64)
        self._sorted = self.ids[self._order]
        if len(self._sorted) > 1 and (np.diff(self._sorted) == 0).any():
            dup = int(self._sorted[1:][np.diff(self._sorted) == 0][0])
            raise A.ArtifactError(f"duplicate id {dup} in an id map")
        n = len(self._sorted)
        # ids that are one contiguous range (generated worlds, re-indexed datasets): arithmetic, no search
        self._base: int | None = None
        self._identity = False
        """Contiguous ids already in ascending order: row = id - base, no ``_order`` lookup."""
        if n and int(self._sorted[-1]) - int(self._sorted[0]) == n - 1:
            self._base = int(self._sorted[0])
            self._identity = bool((self._order == np.arange(n)).all())

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray | list[int]) -> np.ndarray:
        if isinstance(ids, list) and len(ids) <= _SHORT_LIST:
            return np.array([self.row(i) for i in ids], dtype=np.int64)
        return self._rows_array(ids)

    def _rows_array(self, ids: np.ndarray | list[int]) -> np.ndarray:
        try:
            q = np.asarray(ids, dtype=np.int64).reshape(-1)
        except OverflowError:  # an id outside int64 cannot be in the map
            q = np.array([i if -(2**63) <= i < 2**63 else -(2**63) for i in ids], dtype=np.int64)
        n = len(self._sorted)
        if n == 0 or len(q) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        if self._base is not None:
            pos = q - self._base
            # one unsigned compare is 0 <= pos < n; per-request id lists are short, so the few
            # numpy calls (not the arithmetic) are the cost: all-found skips the masking
            found = pos.view(np.uint64) < n
            if found.all():
                return pos if self._identity else self._order[pos]
            return np.where(found, self._order[np.where(found, pos, 0)], -1)
        pos = np.searchsorted(self._sorted, q)
        pos = np.minimum(pos, n - 1)
        found = self._sorted[pos] == q
        return np.where(found, self._order[pos], -1)

    def row(self, id_: int) -> int:
        """One id, without array round trips (a request looks its user up twice)."""
        n = len(self._sorted)
        try:
            key = int(id_)
        except (TypeError, ValueError, OverflowError):
            return int(self._rows_array([id_])[0])
        if n == 0 or not -(2**63) <= key < 2**63:
            return -1
        if self._base is not None:
            pos = key - self._base
            if not 0 <= pos < n:
                return -1
            return pos if self._identity else int(self._order[pos])
        at = int(np.searchsorted(self._sorted, key))
        if at < n and int(self._sorted[at]) == key:
            return int(self._order[at])
        return -1


@dataclass
class Csr:
    """Row → variable-length int64 list, stored as indptr/indices (no per-row Python objects)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None = None

    @classmethod
    def empty(cls, n_rows: int) -> Csr:
        return cls(np.zeros(n_rows + 1, dtype=np.int64), _EMPTY_I64.copy(), _EMPTY_F32.copy())

    @classmethod
    def build(cls, rows: np.ndarray, cols: np.ndarray, n_rows: int, values: np.ndarray | None = None) -> Csr:
        """Group ``cols`` by ``rows``; within a row the order of ``values`` descending (else input order)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if values is not None:
            values = np.asarray(values, dtype=np.float32)
            order = np.lexsort((-values, rows))
        else:
            order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols[order], None if values is None else values[order])

    def get(self, row: int) -> np.ndarray:
        if row < 0 or row + 1 >= len(self.indptr):
            return _EMPTY_I64
        return self.indices[self.indptr[row] : self.indptr[row + 1]]

    def get_values(self, row: int) -> np.ndarray:
        if self.values is None or row < 0 or row + 1 >= len(self.indptr):
            return _EMPTY_F32
        return self.values[self.indptr[row] : self.indptr[row + 1]]

    @staticmethod
    def expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner position, entry index) of spans of ``lens`` entries starting at ``starts``."""
        total = int(np.add.reduce(lens)) if len(lens) else 0
        if total == 0:
            return _EMPTY_I64, _EMPTY_I64
        owner = np.arange(len(lens), dtype=np.int64).repeat(lens)
        # entry = start of its row + position within the row = arange(total) + (start - row's offset)
        shift = starts - lens.cumsum() + lens
        return owner, np.arange(total, dtype=np.int64) + shift[owner]

    def heads(self, rows: list[int], k: int) -> np.ndarray:
        """``indices`` of the first ``k`` entries of each of ``rows`` (a few), concatenated in order.

        Slices per row: taking k of each row's often hundred entries beats a full ``gather``."""
        n_rows = len(self.indptr) - 1
        if k <= 0:
            return _EMPTY_I64
        indptr, indices = self.indptr, self.indices
        parts = []
        for r in rows:
            if 0 <= r < n_rows:
                a = indptr.item(r)
                parts.append(indices[a : min(a + k, indptr.item(r + 1))])
        if not parts:
            return _EMPTY_I64
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def _recorded_search_params(run_dir: Path) -> tuple[int | None, int | None]:
    """efSearch / nprobe the index was tuned with (``index.json``; FAISS does not store them), so the
    served recall is the recall that was measured. None = recsys.index's defaults."""
    path = run_dir / INDEX_INFO
    if not path.is_file():
        return None, None
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise A.ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise A.ArtifactError(f"{path}: expected a JSON object")
    out: list[int | None] = []
    for key in ("ef_search", "nprobe"):
        value = info.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise A.ArtifactError(f"{path}: {key} must be a positive integer, got {value!r}")
        out.append(value)
    return out[0], out[1]


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
    item_category: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    """Category code per item row (index into ``categories``), -1 when unknown."""
    item_in_stock: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    item_price: np.ndarray = field(default_factory=lambda: _EMPTY_F32.copy())
    # --- KOLs and posts ---
    kols: IdMap = field(default_factory=lambda: IdMap(_EMPTY_I64))
    kol_followers: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    kol_category_fit: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    """(n_kols, n_categories) fit in [0, 1], relative to the KOL's best category; from
    kol_category_fit.parquet, else 1.0 for the KOL's declared verticals."""
    post_ids: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    post_kol: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    """KOL row of each post."""
    post_item: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    """Item row of each post."""
    post_created_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    item_posts: Csr = field(default_factory=lambda: Csr.empty(0))
    """Item row → post indices: the newest post of each KOL that posted the item (best post per KOL)."""
    kol_posts: Csr = field(default_factory=lambda: Csr.empty(0))
    """KOL row → post indices, newest first."""
    reference_time: float = 0.0
    """'Now' for freshness when the caller gives none: the newest post's timestamp."""
    # --- social, keyed by user row of the ``social_users`` map (users without embeddings included) ---
    social_users: IdMap = field(default_factory=lambda: IdMap(_EMPTY_I64))
    user_follows: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → followed KOL rows."""
    user_friends: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → friend social-user rows (friends table ∪ share edges, both directions)."""
    user_affinity: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → KOL rows by static affinity, descending (values = affinity)."""
    user_buys: Csr = field(default_factory=lambda: Csr.empty(0))
    """Social-user row → bought item rows (from social/buys.parquet when the run exports it)."""
    popular_items: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    """All item rows by popularity, descending: trending fallback and cold-start backfill."""
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
        run_dir = Path(run_dir)
        manifest = A.verify_run_dir(run_dir)
        user_emb = A.load_array(run_dir / A.USER_EMB).astype(np.float32, copy=False)
        item_emb = A.load_array(run_dir / A.ITEM_EMB).astype(np.float32, copy=False)
        item_ids = A.load_array(run_dir / A.ITEM_IDS)
        if (run_dir / A.USER_IDS).is_file():
            user_ids = A.load_array(run_dir / A.USER_IDS)
        else:
            user_ids = np.arange(user_emb.shape[0], dtype=np.int64)
        pop = None
        if (run_dir / A.ITEM_POPULARITY).is_file():
            pop = A.load_array(run_dir / A.ITEM_POPULARITY)
        index = None
        if (run_dir / A.INDEX).is_file():
            ef_search, nprobe = _recorded_search_params(run_dir)
            index = load_index(run_dir / A.INDEX, ef_search=ef_search, nprobe=nprobe)
            if index.ntotal != item_emb.shape[0] or index.d != item_emb.shape[1]:
                raise A.ArtifactError(
                    f"{run_dir}: {A.INDEX} holds {index.ntotal}x{index.d} vectors but {A.ITEM_EMB} is "
                    f"{item_emb.shape[0]}x{item_emb.shape[1]}"
                )
        elif not build_missing_index:
            raise A.ArtifactError(f"{run_dir}: no {A.INDEX}")
        try:
            labels = A.load_labels(run_dir / A.LABELS)
        except A.ArtifactError:
            raise
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise A.ArtifactError(f"{run_dir / A.LABELS}: cannot read labels ({exc})") from exc
        tables = {}
        for sub, names in (
            (A.CATALOG_DIR, ("items", "kols", "posts")),
            (
                A.SOCIAL_DIR,
                ("follows", "friends", "share_edges", "user_kol_affinity", "kol_category_fit", "buys"),
            ),
        ):
            for name in names:
                path = run_dir / sub / f"{name}.parquet"
                if path.is_file():
                    try:
                        tables[name] = {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}
                    except Exception as exc:  # pyarrow raises several types for a bad file
                        raise A.ArtifactError(f"{path}: cannot read Parquet ({exc})") from exc
        model = cls.from_arrays(
            user_emb=user_emb,
            item_emb=item_emb,
            user_ids=user_ids,
            item_ids=item_ids,
            item_popularity=pop,
            index=index,
            tables=tables,
            run_dir=run_dir,
            manifest=manifest,
            labels=labels,
        )
        return model

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
        if index is None:
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
            labels={kind: dict((labels or {}).get(kind, {})) for kind in A.LABEL_KINDS},
        )
        model._load_tables(tables or {}, where)
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

    # ------------------------------------------------------------------ world tables
    def _load_tables(self, t: dict[str, dict[str, np.ndarray]], where: str) -> None:
        def cols(name: str, *needed: str) -> dict[str, np.ndarray] | None:
            table = t.get(name)
            if table is None:
                return None
            for c in needed:
                if c not in table:
                    raise A.ArtifactError(f"{where}: table {name} has no column {c!r}")
            return table

        n_items = self.n_items
        items = cols("items", "item_id", "category")
        if items is not None:
            rows = self.items.rows(items["item_id"])
            ok = rows >= 0
            # an item without a known category (null, empty, the import's placeholder) keeps code -1:
            # one catch-all "category" would cap an events-only shop's page at per_category_cap items
            raw_cats = np.asarray(items["category"]).tolist()
            cats = np.array([c or UNKNOWN_CATEGORY for c in raw_cats], dtype=str)
            known_cat = ok & (cats != UNKNOWN_CATEGORY)
            self.categories = sorted(set(cats[known_cat].tolist()))
            code = {c: i for i, c in enumerate(self.categories)}
            self.item_category[rows[known_cat]] = np.array([code[c] for c in cats[known_cat]], dtype=np.int64)
            if "in_stock" in items:
                self.item_in_stock[rows[ok]] = np.asarray(items["in_stock"], dtype=bool)[ok]
            if "price" in items:
                self.item_price[rows[ok]] = np.asarray(items["price"], dtype=np.float32)[ok]

        kols = cols("kols", "kol_id")
        posts = cols("posts", "post_id", "kol_id", "item_id", "created_at")
        kol_id_parts = [_EMPTY_I64]
        if kols is not None:
            kol_id_parts.append(np.asarray(kols["kol_id"], dtype=np.int64))
        if posts is not None:
            kol_id_parts.append(np.asarray(posts["kol_id"], dtype=np.int64))
        for name in ("follows", "user_kol_affinity", "kol_category_fit"):
            if name in t and "kol_id" in t[name]:
                kol_id_parts.append(np.asarray(t[name]["kol_id"], dtype=np.int64))
        self.kols = IdMap(np.unique(np.concatenate(kol_id_parts)))
        n_kols = len(self.kols)

        # creator-category fit: explicit table, else 1.0 for the KOL's declared verticals
        n_cats = len(self.categories)
        self.kol_category_fit = np.zeros((n_kols, n_cats), dtype=np.float32)
        fit = cols("kol_category_fit", "kol_id", "category", "fit")
        cat_code = {c: i for i, c in enumerate(self.categories)}
        if fit is not None:
            krows = self.kols.rows(fit["kol_id"])
            ccodes = np.array([cat_code.get(str(c), -1) for c in fit["category"]], dtype=np.int64)
            ok = (krows >= 0) & (ccodes >= 0)
            vals = np.maximum(np.asarray(fit["fit"], dtype=np.float32), 0.0)
            self.kol_category_fit[krows[ok], ccodes[ok]] = vals[ok]
            # training exports shares (rows sum to 1); rescale so each KOL's best category is 1.0
            top = self.kol_category_fit.max(axis=1, keepdims=True) if n_cats else None
            if top is not None:
                np.divide(self.kol_category_fit, top, out=self.kol_category_fit, where=top > 0)
        elif kols is not None and "verticals" in kols:
            krows = self.kols.rows(kols["kol_id"])
            for krow, verticals in zip(krows, kols["verticals"], strict=True):
                for v in str(verticals or "").split("|"):
                    if v in cat_code:
                        self.kol_category_fit[krow, cat_code[v]] = 1.0

        if posts is not None:
            irows = self.items.rows(posts["item_id"])
            keep = irows >= 0
            if not keep.all():
                log.warning(
                    "%s: %d posts reference items without embeddings; ignored", where, int((~keep).sum())
                )
            self.post_ids = np.asarray(posts["post_id"], dtype=np.int64)[keep]
            self.post_kol = self.kols.rows(np.asarray(posts["kol_id"], dtype=np.int64)[keep])
            self.post_item = irows[keep]
            self.post_created_at = np.asarray(posts["created_at"], dtype=np.float64)[keep]
            n_posts = len(self.post_ids)
            self.reference_time = float(self.post_created_at.max()) if n_posts else 0.0
            # KOL → posts, newest first
            self.kol_posts = Csr.build(
                self.post_kol, np.arange(n_posts), n_kols, values=self.post_created_at.astype(np.float32)
            )
            # item → newest post per (item, KOL)
            order = np.lexsort((-self.post_created_at, self.post_kol, self.post_item))
            pi, pk = self.post_item[order], self.post_kol[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = (pi[1:] != pi[:-1]) | (pk[1:] != pk[:-1])
            best = order[first]
            self.item_posts = Csr.build(self.post_item[best], best, n_items)
        else:
            self.kol_posts = Csr.empty(n_kols)
            self.item_posts = Csr.empty(n_items)

        # social: user ids may include users without embeddings (brand-new but with follows)
        follows = cols("follows", "user_id", "kol_id")
        friends = cols("friends", "user_id", "friend_id")
        shares = cols("share_edges", "user_id", "to_user_id")
        aff = cols("user_kol_affinity", "user_id", "kol_id", "affinity")
        buys = cols("buys", "user_id", "item_id")
        uid_parts = [_EMPTY_I64]
        for table, keys in (
            (follows, ("user_id",)),
            (friends, ("user_id", "friend_id")),
            (shares, ("user_id", "to_user_id")),
            (aff, ("user_id",)),
            (buys, ("user_id",)),
        ):
            if table is not None:
                uid_parts.extend(np.asarray(table[k], dtype=np.int64) for k in keys)
        self.social_users = IdMap(np.unique(np.concatenate(uid_parts)))
        n_su = len(self.social_users)
        su = self.social_users.rows

        if follows is not None:
            self.user_follows = Csr.build(su(follows["user_id"]), self.kols.rows(follows["kol_id"]), n_su)
            self.kol_followers = np.bincount(self.kols.rows(follows["kol_id"]), minlength=n_kols).astype(
                np.int64
            )
        else:
            self.user_follows = Csr.empty(n_su)
            self.kol_followers = np.zeros(n_kols, dtype=np.int64)

        a_parts, b_parts = [_EMPTY_I64], [_EMPTY_I64]
        for table, ka, kb in ((friends, "user_id", "friend_id"), (shares, "user_id", "to_user_id")):
            if table is not None:
                a, b = su(table[ka]), su(table[kb])
                a_parts += [a, b]
                b_parts += [b, a]
        a_all, b_all = np.concatenate(a_parts), np.concatenate(b_parts)
        if len(a_all):
            pairs = np.unique(np.stack([a_all, b_all], axis=1), axis=0)
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
            self.user_friends = Csr.build(pairs[:, 0], pairs[:, 1], n_su)
        else:
            self.user_friends = Csr.empty(n_su)

        if aff is not None:
            self.user_affinity = Csr.build(
                su(aff["user_id"]), self.kols.rows(aff["kol_id"]), n_su, values=aff["affinity"]
            )
        else:
            self.user_affinity = Csr.empty(n_su)

        if buys is not None:
            brow = self.items.rows(buys["item_id"])
            ok = brow >= 0
            pairs = np.unique(np.stack([su(buys["user_id"])[ok], brow[ok]], axis=1), axis=0)
            self.user_buys = Csr.build(pairs[:, 0], pairs[:, 1], n_su)
        else:
            self.user_buys = Csr.empty(n_su)

    def item_categories(self, item_ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """Category name of each item key, None when the run does not know the item or its category
        (what the service stamps on logged events; short lists one by one, where numpy's per-call
        overhead would dominate: an event batch is usually one event)."""
        if len(item_ids) <= _SHORT_LIST:
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
        """(owner position in ``items``, ``item_posts`` entry index, posts per item as int32) of all the
        posts of ``items``, plus each item's category (int32), from one row gather of per-item facts.
        ``items`` must be valid rows."""
        rows = self._item_facts.take(items, axis=0)
        halves = rows[:, 1:].view(np.int32)
        owner, entries = Csr.expand(rows[:, 0], halves[:, 0])
        return owner, entries, halves[:, 0], halves[:, 1]

    def item_post_facts(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(post index, KOL row, fit, post time) of ``item_posts`` entries; equal to ``indices[entries]``
        and the per-post arrays at those posts (KOL rows as int32). Views into one gathered block."""
        rows = self._item_post_facts.take(entries, axis=0)  # take: twice as fast as [] for 2-D rows
        kol_fit = rows[:, 2:].view(np.int32)
        return rows[:, 0], kol_fit[:, 0], kol_fit[:, 1].view(np.float32), rows[:, 1].view(np.float64)

    def explore_pool(self, max_followers: int, size: int = 500) -> np.ndarray:
        """Newest posts (indices) of creators with at most ``max_followers`` followers."""
        if len(self.post_ids) == 0:
            return _EMPTY_I64
        cached = self._explore_cache.get((max_followers, size))
        if cached is not None:
            return cached
        # walk the posts newest first in chunks until enough are by small creators: a first request
        # per variant used to sort all posts of those creators (0.24 s on the 1M-item bench catalog)
        order, followers, post_kol = self.posts_newest_first, self.kol_followers, self.post_kol
        found: list[np.ndarray] = []
        n_found, start, chunk = 0, 0, max(4 * size, 4096)
        while n_found < size and start < len(order):
            part = order[start : start + chunk]
            part = part[followers[post_kol[part]] <= max_followers]
            found.append(part)
            n_found += len(part)
            start += chunk
            chunk *= 2  # few small creators: widen the window rather than loop many times
        idx = np.concatenate(found)[:size]  # (there are posts, so the walk took at least one chunk)
        self._explore_cache[(max_followers, size)] = idx
        return idx

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
        n_items = self.n_items
        item_facts = np.zeros((n_items, 2), dtype=np.int64)
        halves = item_facts[:, 1:].view(np.int32)  # the second column as two int32 halves
        indptr = self.item_posts.indptr
        if len(indptr) == n_items + 1:
            item_facts[:, 0] = indptr[:-1]
            halves[:, 0] = np.diff(indptr)
        halves[:, 1] = self.item_category if len(self.item_category) == n_items else -1
        self._item_facts = item_facts
        """Per item row, side by side: where its ``item_posts`` start, how many there are (int32)
        and its category (int32): one row gather instead of three scattered lookups."""
        posts = self.item_posts.indices
        facts = np.zeros((len(posts), 3), dtype=np.int64)
        if len(posts):
            facts[:, 0] = posts
            facts[:, 1] = self.post_created_at[posts].view(np.int64)
            kol_fit = facts[:, 2:].view(np.int32)  # the third column as two int32 halves
            kol_fit[:, 0] = self.post_kol[posts]
            kol_fit[:, 1] = self.post_fit[posts].view(np.int32)
        self._item_post_facts = facts
        """Per ``item_posts`` entry, what scoring reads of its post, side by side in entry order: post
        index, post time (float64 bits), KOL row and fit (int32 and float32 bits). An item's posts
        are adjacent here, while their indices point all over the per-post arrays: one row gather
        replaces four scattered ones (a cache miss per item instead of four per post)."""
        values = self.user_affinity.values
        self.user_affinity_squashed = squash(values if values is not None else _EMPTY_F32)
        """``squash`` of ``user_affinity.values`` (aligned with them)."""

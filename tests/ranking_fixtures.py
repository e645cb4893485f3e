"""A tiny, hand-built, valid run directory with known facts, for ranker and serving tests.

Import :func:`make_tiny_run` (writes into a tmp dir you pass) and the constants of :class:`Tiny`.

World (ids are external ids):
- 4 categories; 40 items ``1000..1039``; item ``1000 + i`` has category ``CATS[i % 4]``.
- KOLs ``10..15``. KOL ``15`` has no followers (a "new creator": the exploration pool).
- users ``1..6`` with embeddings; user ``7`` exists only in the social tables (follows KOL 11);
  user ``99`` is unknown everywhere (cold start).
- user 1 follows KOL ``FOLLOWED_KOL`` (10); friends of user 1: users 2 and 3, both bought
  ``FRIENDS_ITEM`` (1005); user 2 also bought ``ONE_FRIEND_ITEM`` (1006).
- KOL ``10 + j`` posts items ``1000 + j + 6n``; ``TWO_KOL_ITEM`` (1002) is posted by KOL 12 and by
  the followed KOL 10 (one product, two posts).
- ``OUT_OF_STOCK_ITEM`` (1003) is out of stock.
- user 1's embedding points at ``ANN_ITEM`` (1001) (highest dot product of all items).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from recsys import artifacts as A
from recsys.index import build_index, save_index

SHIPPED_VARIANTS = Path(__file__).resolve().parents[1] / "configs" / "ranking"

ALL_SOURCES = frozenset(
    {"followed_kol", "kol_affinity", "friends_bought", "ann", "similar", "trending", "explore", "popular"}
)
"""Every candidate-source name a feed entry can carry (written out: tests check the ranker against it)."""


@dataclass(frozen=True)
class Tiny:
    CATS = ("beauty", "home", "food", "apparel")
    N_ITEMS = 40
    ITEM0 = 1000
    KOLS = (10, 11, 12, 13, 14, 15)
    USERS = (1, 2, 3, 4, 5, 6)
    SOCIAL_ONLY_USER = 7
    UNKNOWN_USER = 99
    USER = 1
    FOLLOWED_KOL = 10
    NEW_KOL = 15
    FRIENDS = (2, 3)
    FRIENDS_ITEM = 1005
    ONE_FRIEND_ITEM = 1006
    TWO_KOL_ITEM = 1002
    OUT_OF_STOCK_ITEM = 1003
    ANN_ITEM = 1001
    NOW = 1_700_000_000
    DIM = 8


def category_of(item_id: int) -> str:
    return Tiny.CATS[(item_id - Tiny.ITEM0) % 4]


def tiny_tables() -> dict[str, pa.Table]:
    """The world tables, as Arrow tables named like the run-directory files."""
    t = Tiny
    item_ids = np.arange(t.ITEM0, t.ITEM0 + t.N_ITEMS, dtype=np.int64)
    items = pa.table(
        {
            "item_id": item_ids,
            "category": [category_of(int(i)) for i in item_ids],
            "brand": [f"brand{i % 5}" for i in range(t.N_ITEMS)],
            "price": np.linspace(5.0, 100.0, t.N_ITEMS),
            "merchant_id": np.arange(t.N_ITEMS, dtype=np.int64) % 3,
            "in_stock": [int(i) != t.OUT_OF_STOCK_ITEM for i in item_ids],
        }
    )
    kols = pa.table(
        {
            "kol_id": np.array(t.KOLS, dtype=np.int64),
            "verticals": ["beauty|home", "food", "apparel|beauty", "home", "food|apparel", "beauty"],
        }
    )
    # KOL k (index j) posts items j, j+6, j+12, ... (one post per item); the followed KOL 10 also
    # posts TWO_KOL_ITEM (first posted by KOL 12), so that product has two posts.
    post_rows = []
    pid = 500
    for j, k in enumerate(t.KOLS):
        for i in range(j, t.N_ITEMS, len(t.KOLS)):
            post_rows.append((pid, k, t.ITEM0 + i, t.NOW - 86_400 * (i % 10)))
            pid += 1
    post_rows.append((pid, t.FOLLOWED_KOL, t.TWO_KOL_ITEM, t.NOW))  # KOL 12 posted it too
    posts = pa.table(
        {
            "post_id": np.array([r[0] for r in post_rows], dtype=np.int64),
            "kol_id": np.array([r[1] for r in post_rows], dtype=np.int64),
            "item_id": np.array([r[2] for r in post_rows], dtype=np.int64),
            "created_at": np.array([r[3] for r in post_rows], dtype=np.int64),
        }
    )
    follows = pa.table(
        {
            "user_id": np.array([1, 2, 3, 4, 7, 5], dtype=np.int64),
            "kol_id": np.array([10, 11, 12, 13, 11, 14], dtype=np.int64),
            "ts": np.full(6, t.NOW - 1000, dtype=np.int64),
        }
    )
    friends = pa.table(
        {"user_id": np.array([1, 1], dtype=np.int64), "friend_id": np.array([2, 3], dtype=np.int64)}
    )
    share_edges = pa.table(
        {
            "user_id": np.array([4], dtype=np.int64),
            "to_user_id": np.array([5], dtype=np.int64),
            "weight": np.array([1.0]),
        }
    )
    affinity = pa.table(
        {
            "user_id": np.array([1, 1, 2], dtype=np.int64),
            "kol_id": np.array([10, 13, 11], dtype=np.int64),
            "affinity": np.array([2.5, 1.0, 2.0]),
        }
    )
    fit_rows = []
    kol_table = kols.to_pydict()
    for k, verticals in zip(kol_table["kol_id"], kol_table["verticals"], strict=True):
        for c in t.CATS:
            fit_rows.append((k, c, 1.0 if c in verticals.split("|") else 0.1))
    fit = pa.table(
        {
            "kol_id": np.array([r[0] for r in fit_rows], dtype=np.int64),
            "category": [r[1] for r in fit_rows],
            "fit": np.array([r[2] for r in fit_rows]),
        }
    )
    buys = pa.table(
        {
            "user_id": np.array([2, 3, 2], dtype=np.int64),
            "item_id": np.array([t.FRIENDS_ITEM, t.FRIENDS_ITEM, t.ONE_FRIEND_ITEM], dtype=np.int64),
        }
    )
    return {
        "catalog/items": items,
        "catalog/kols": kols,
        "catalog/posts": posts,
        "social/follows": follows,
        "social/friends": friends,
        "social/share_edges": share_edges,
        "social/user_kol_affinity": affinity,
        "social/kol_category_fit": fit,
        "social/buys": buys,
    }


def tiny_embeddings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(user_emb, item_emb): random, except user 1's embedding equals ANN_ITEM's direction."""
    rng = np.random.default_rng(seed)
    item_emb = rng.normal(size=(Tiny.N_ITEMS, Tiny.DIM)).astype(np.float32)
    item_emb /= np.linalg.norm(item_emb, axis=1, keepdims=True)
    user_emb = rng.normal(size=(len(Tiny.USERS), Tiny.DIM)).astype(np.float32) * 0.5
    user_emb[0] = item_emb[Tiny.ANN_ITEM - Tiny.ITEM0] * 3.0
    return user_emb, item_emb


def tiny_runs(root: Path, *versions: int) -> Path:
    """A runs root holding ``run<v>`` (a tiny run of version ``v``) for each of ``versions``."""
    for v in versions:
        make_tiny_run(root / f"run{v}", version=v)
    return root


def make_tiny_run(
    run_dir: Path,
    with_world: bool = True,
    with_index: bool = True,
    version: int = 1,
    skip_tables: tuple[str, ...] = (),
) -> Path:
    """Write a valid run directory (manifest last). ``with_world=False`` ⇒ embeddings only."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    user_emb, item_emb = tiny_embeddings()
    A.save_array(run_dir / A.USER_EMB, user_emb)
    A.save_array(run_dir / A.ITEM_EMB, item_emb)
    A.save_array(run_dir / A.USER_IDS, np.array(Tiny.USERS, dtype=np.int64))
    A.save_array(run_dir / A.ITEM_IDS, np.arange(Tiny.ITEM0, Tiny.ITEM0 + Tiny.N_ITEMS, dtype=np.int64))
    pop = np.arange(Tiny.N_ITEMS, 0, -1).astype(np.float32)  # item 1000 most popular
    A.save_array(run_dir / A.ITEM_POPULARITY, pop)
    if with_index:
        save_index(build_index(item_emb, "Flat"), run_dir / A.INDEX)
    if with_world:
        for name, table in tiny_tables().items():
            if name.split("/")[1] in skip_tables:
                continue
            path = run_dir / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
    manifest = A.Manifest(
        run_id=f"tiny-v{version}",
        version=version,
        created_at=float(Tiny.NOW),
        config={"name": "tiny"},
        data_fingerprint="tiny",
    )
    A.write_manifest(run_dir, manifest)
    return run_dir


def kol_posts(kol_id: int) -> set[int]:
    """The items KOL ``kol_id`` posted in the tiny world (see the module docstring)."""
    j = Tiny.KOLS.index(kol_id)
    out = {Tiny.ITEM0 + i for i in range(j, Tiny.N_ITEMS, len(Tiny.KOLS))}
    if kol_id == Tiny.FOLLOWED_KOL:
        out.add(Tiny.TWO_KOL_ITEM)
    return out


def copy_shipped_variants(dest: Path) -> Path:
    """A writable copy of configs/ranking/*.yaml in ``dest`` (created), for tests that add variants."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SHIPPED_VARIANTS.glob("*.yaml"):
        shutil.copy(path, dest / path.name)
    return dest


LOOSE = "loose"
"""A test variant: KOL 15 alone is a 'new creator', caps loose, so every source can show up."""


def loose_ranking_dir(directory: Path) -> Path:
    """The shipped variants plus :data:`LOOSE`, copied into ``directory``."""
    out = copy_shipped_variants(directory)
    loose = {
        "name": LOOSE,
        "explore_max_followers": 0,
        "per_kol_cap": 100,
        "per_category_cap": 100,
        "candidates": {"ann_k": 5, "explore_slots": 1, "posts_per_kol": 20},
    }
    (out / f"{LOOSE}.yaml").write_text(yaml.safe_dump(loose))
    return out

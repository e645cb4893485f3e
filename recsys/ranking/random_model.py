"""A random in-memory FeedModel of any size (not the simulated world of ``recsys.world``), and a timer
for ``FeedRanker.rank``.

Why: the ranker's latency budget (a few ms per request) must be checked at catalog sizes no test
fixture has (100k–1M items) without training a model; random embeddings and random world tables
exercise exactly the same code paths. Run ``python -m recsys.ranking.random_model --items 100000``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.index import build_index
from recsys.ranking.context import UserContext
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.variants import RankingVariant
from recsys.schema import CATEGORIES


@dataclass
class RandomRun:
    """Random embeddings, ids and world tables: a FeedModel (:meth:`feed_model`) or a run directory."""

    user_emb: np.ndarray
    item_emb: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_popularity: np.ndarray
    tables: dict[str, dict[str, np.ndarray]]

    def feed_model(self, factory: str = "Flat") -> FeedModel:
        """The FeedModel of these arrays and tables, with a ``factory`` index over the items."""
        index = build_index(self.item_emb, factory)
        return FeedModel.from_arrays(
            self.user_emb,
            self.item_emb,
            self.user_ids,
            self.item_ids,
            self.item_popularity,
            index=index,
            tables=self.tables,
        )


def random_run(
    n_items: int = 100_000,
    n_users: int = 20_000,
    n_kols: int = 2_000,
    dim: int = 64,
    posts_per_item: float = 2.0,
    follows_per_user: int = 10,
    friends_per_user: int = 10,
    buys_per_user: int = 5,
    seed: int = 0,
    spectrum_decay: float = 0.0,
) -> RandomRun:
    """``spectrum_decay`` = a: embedding coordinate j (1-based) has variance proportional to j**-a. 0 gives
    isotropic Gaussians, the worst case for ANN (no neighbourhood structure at all); trained
    embeddings have a decaying spectrum (a of about 1 leaves roughly 14 effective dimensions of 64)."""
    rng = np.random.default_rng(seed)
    item_emb = rng.standard_normal((n_items, dim), dtype=np.float32) / np.sqrt(dim)
    user_emb = rng.standard_normal((n_users, dim), dtype=np.float32) / np.sqrt(dim)
    if spectrum_decay:
        scale = np.arange(1, dim + 1, dtype=np.float64) ** (-spectrum_decay / 2)
        scale = (scale * np.sqrt(dim / (scale**2).sum())).astype(np.float32)  # same mean squared norm
        item_emb *= scale
        user_emb *= scale
    item_ids = np.arange(n_items, dtype=np.int64) + 1_000_000
    user_ids = np.arange(n_users, dtype=np.int64)
    kol_ids = np.arange(n_kols, dtype=np.int64) + 10_000_000
    pop = rng.pareto(1.2, n_items).astype(np.float32)
    n_posts = int(n_items * posts_per_item)
    now = 1_700_000_000
    cats = np.array(CATEGORIES)
    tables: dict[str, dict[str, np.ndarray]] = {
        "items": {
            "item_id": item_ids,
            "category": cats[rng.integers(0, len(cats), n_items)],
            "price": rng.uniform(1, 200, n_items),
            "in_stock": rng.random(n_items) > 0.02,
        },
        "kols": {"kol_id": kol_ids, "verticals": cats[rng.integers(0, len(cats), n_kols)]},
        "posts": {
            "post_id": np.arange(n_posts, dtype=np.int64),
            "kol_id": kol_ids[rng.integers(0, n_kols, n_posts)],
            "item_id": item_ids[rng.integers(0, n_items, n_posts)],
            "created_at": now - rng.integers(0, 60 * 86_400, n_posts),
        },
        "follows": {
            "user_id": np.repeat(user_ids, follows_per_user),
            # skewed: a few big creators, a long tail of small ones
            "kol_id": kol_ids[np.minimum(rng.zipf(1.5, n_users * follows_per_user) - 1, n_kols - 1)],
        },
        "friends": {
            "user_id": np.repeat(user_ids, friends_per_user),
            "friend_id": rng.integers(0, n_users, n_users * friends_per_user),
        },
        "user_kol_affinity": {
            "user_id": np.repeat(user_ids, 20),
            "kol_id": kol_ids[rng.integers(0, n_kols, n_users * 20)],
            "affinity": rng.exponential(1.0, n_users * 20),
        },
        "buys": {
            "user_id": np.repeat(user_ids, buys_per_user),
            "item_id": item_ids[rng.integers(0, n_items, n_users * buys_per_user)],
        },
    }
    return RandomRun(user_emb, item_emb, user_ids, item_ids, pop, tables)


def time_rank(
    model: FeedModel,
    variant: RankingVariant,
    calls: int = 1000,
    limit: int = 20,
    seed: int = 1,
    search_threads: int = 1,
) -> dict[str, Any]:
    """p50/p99/mean milliseconds of ``rank()`` over ``calls`` users with realistic contexts
    (50 seen items, a trending list of 200, 20 live friends-bought items; 5% unknown users).

    ``cpu_*`` is this thread's CPU time per call: on a shared, busy machine it moves less than the
    wall time (which also counts waiting for a core)."""
    rng = np.random.default_rng(seed)
    ranker = FeedRanker(model, search_threads=search_threads)
    ids = model.items.ids
    trending = [(int(i), float(s)) for i, s in zip(rng.choice(ids, 200), rng.random(200), strict=True)]
    contexts = []
    for _ in range(calls):
        known = rng.random() > 0.05
        uid = int(rng.choice(model.users.ids)) if known else -1 - int(rng.integers(10**9))
        contexts.append(
            (
                UserContext(
                    user_id=uid,
                    recent_items=[int(i) for i in rng.choice(ids, 5)],
                    seen={int(i) for i in rng.choice(ids, 50)},
                    bought={int(i) for i in rng.choice(ids, 5)},
                    hidden_items={int(i) for i in rng.choice(ids, 2)},
                    hidden_kols={int(k) for k in rng.choice(model.kols.ids, 1)} if len(model.kols) else set(),
                    live_kol_affinity={int(k): float(rng.normal()) for k in rng.choice(model.kols.ids, 5)}
                    if len(model.kols)
                    else {},
                ),
                {int(i): int(rng.integers(1, 4)) for i in rng.choice(ids, 20)},
            )
        )
    for c, fb in contexts[:20]:  # warm-up
        ranker.rank(c, variant, limit, trending=trending, friends_bought=fb)
    times = np.empty(calls)
    cpu = np.empty(calls)
    short = 0
    for j, (c, fb) in enumerate(contexts):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        page = ranker.rank(c, variant, limit, trending=trending, friends_bought=fb)
        times[j] = time.perf_counter() - t0
        cpu[j] = time.thread_time() - c0
        short += len(page) < limit
    ms = times * 1e3
    cpu_ms = cpu * 1e3
    return {
        "calls": calls,
        "limit": limit,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
        "cpu_mean_ms": round(float(cpu_ms.mean()), 3),
        "short_pages": int(short),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--kols", type=int, default=2_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--factory", default="Flat")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument(
        "--threads", type=int, default=1, help="FAISS OpenMP threads while timing (the build uses all cores)"
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model = random_run(args.items, args.users, args.kols, args.dim).feed_model(args.factory)
    build_s = time.perf_counter() - t0
    out = {
        "items": args.items,
        "users": args.users,
        "kols": args.kols,
        "posts": len(model.post_ids),
        "dim": args.dim,
        "factory": args.factory,
        "threads": args.threads,
        "build_s": round(build_s, 1),
        **time_rank(
            model, RankingVariant(name="default"), args.calls, args.limit, search_threads=args.threads
        ),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

"""Golden pages of ``FeedRanker.rank``: ~200 seeded contexts over three small synthetic models.

Why: speed work on the ranker must not change what it serves. The fixture
``tests/data/rank_golden.json`` holds the pages the ranker returned when it was written; the test
(tests/test_ranking_golden.py) recomputes them and compares. Regenerate ONLY for an intended change
of ranking behaviour: ``python -m tests.rank_golden_cases --write``.

The models: ``world`` (20k items, contiguous ids, every table), ``gappy`` (a smaller world whose ids
are shuffled and not contiguous, so id lookups take the searchsorted path) and ``bare`` (embeddings
and popularity only). The contexts vary every input of ``rank``: known / unknown users, seen, bought
and hidden items (some drawn from the user's own ANN top so filters bite), hidden KOLs (some of them
followed), live KOL affinity of both signs (incl. non-finite and unknown ids), trending lists (given,
with junk entries, or None), friends' purchases, ``exclude``, ``now``, precomputed ``ann``, limits
from 1 to 60 and every shipped variant plus a few edited ones.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.index import build_index, search
from recsys.ranking.context import UserContext
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.random_model import random_run
from recsys.ranking.variants import RankingVariant, load_variants
from tests.ranking_fixtures import SHIPPED_VARIANTS

GOLDEN = Path(__file__).resolve().parent / "data" / "rank_golden.json"
SCORE_DECIMALS = 5


def build_models() -> dict[str, FeedModel]:
    w = random_run(n_items=20_000, n_users=2_000, n_kols=500, dim=32, seed=11, spectrum_decay=1.0)
    world = FeedModel.from_arrays(
        w.user_emb,
        w.item_emb,
        w.user_ids,
        w.item_ids,
        w.item_popularity,
        index=build_index(w.item_emb, "Flat"),
        tables=w.tables,
    )

    g = random_run(n_items=4_000, n_users=400, n_kols=80, dim=16, seed=12, follows_per_user=4)
    rng = np.random.default_rng(12)
    item_map = dict(
        zip(g.item_ids.tolist(), (rng.permutation(len(g.item_ids)) * 7 + 3).tolist(), strict=True)
    )
    user_map = dict(
        zip(g.user_ids.tolist(), (rng.permutation(len(g.user_ids)) * 5 + 1).tolist(), strict=True)
    )
    kol_ids = np.unique(g.tables["kols"]["kol_id"])
    kol_map = dict(zip(kol_ids.tolist(), (rng.permutation(len(kol_ids)) * 3 + 2).tolist(), strict=True))
    maps = {"item_id": item_map, "user_id": user_map, "friend_id": user_map, "kol_id": kol_map}
    tables = {
        name: {
            col: (np.array([maps[col][v] for v in arr.tolist()], dtype=np.int64) if col in maps else arr)
            for col, arr in cols.items()
        }
        for name, cols in g.tables.items()
    }
    gappy = FeedModel.from_arrays(
        g.user_emb,
        g.item_emb,
        np.array([user_map[u] for u in g.user_ids.tolist()], dtype=np.int64),
        np.array([item_map[i] for i in g.item_ids.tolist()], dtype=np.int64),
        g.item_popularity,
        index=build_index(g.item_emb, "Flat"),
        tables=tables,
    )

    b = random_run(n_items=3_000, n_users=300, n_kols=10, dim=16, seed=13)
    bare = FeedModel.from_arrays(b.user_emb, b.item_emb, b.user_ids, b.item_ids, b.item_popularity)
    return {"world": world, "gappy": gappy, "bare": bare}


def variants() -> dict[str, RankingVariant]:
    out = dict(load_variants(SHIPPED_VARIANTS))
    base = out["default"]
    out["no_explore_no_ann"] = base.model_copy(
        update={
            "name": "no_explore_no_ann",
            "candidates": base.candidates.model_copy(update={"explore_slots": 0, "ann_k": 0}),
        }
    )
    out["wide_explore_no_demotion"] = base.model_copy(
        update={
            "name": "wide_explore_no_demotion",
            "hide_demotion": 0.0,
            "explore_max_followers": 200,
            "candidates": base.candidates.model_copy(update={"explore_slots": 5, "similar_to_recent": 0}),
        }
    )
    out["tight_caps"] = base.model_copy(
        update={"name": "tight_caps", "per_kol_cap": 1, "per_category_cap": 2}
    )
    few = {"ann_k": 5, "trending_k": 2, "followed_kol_posts": 3, "friends_bought": 2, "explore_slots": 1}
    few |= {"similar_to_recent": 3, "affinity_kols": 1}
    out["backfill"] = base.model_copy(  # few candidates, loose caps: the popular backfill fills pages
        update={
            "name": "backfill",
            "per_kol_cap": 6,
            "per_category_cap": 30,
            "candidates": base.candidates.model_copy(update=few),
        }
    )
    return out


@dataclass
class Case:
    model: str
    variant: str
    ctx: UserContext
    limit: int
    exclude: list[int]
    trending: list[tuple[int, float]] | None
    friends_bought: dict[int, int] | None
    now: float | None
    with_ann: bool


def _trending_lists(model: FeedModel, rng: np.random.Generator) -> list[list[tuple[int, float]] | None]:
    ids = model.items.ids
    plain = [(int(i), float(s)) for i, s in zip(rng.choice(ids, 200), rng.random(200), strict=True)]
    junk = [(int(i), float(s)) for i, s in zip(rng.choice(ids, 30), rng.random(30) * 5, strict=True)]
    junk += [(int(ids[0]), float("nan")), (-17, 3.0), (2**70, 1.0), (int(ids[1]), 0.0), (int(ids[2]), 9.0)]
    zeros = [(int(i), 0.0) for i in rng.choice(ids, 10)]
    return [None, plain, junk, zeros, []]


def make_cases(
    models: dict[str, FeedModel], n_world: int = 150, n_gappy: int = 40, n_bare: int = 15
) -> list[Case]:
    rng = np.random.default_rng(2024)
    names = sorted(variants())
    cases: list[Case] = []
    for model_name, count in (("world", n_world), ("gappy", n_gappy), ("bare", n_bare)):
        m = models[model_name]
        trend_lists = _trending_lists(m, rng)
        ids = m.items.ids
        kol_ids = m.kols.ids
        for j in range(count):
            kind = rng.random()
            if kind < 0.7:
                uid = int(rng.choice(m.users.ids))
            elif kind < 0.85:
                uid = -1 - int(rng.integers(10**9))  # unknown everywhere
            else:
                uid = int(rng.integers(10**12, 10**13))  # unknown, large id
            urow = m.users.row(uid)
            seen: set[int] = set()
            if rng.random() < 0.7:
                seen |= {int(i) for i in rng.choice(ids, int(rng.integers(0, 300)))}
            if urow >= 0 and rng.random() < 0.5:  # hide part of the user's own ANN top
                _, top = search(m.index, m.user_emb[urow : urow + 1], 60)
                seen |= {int(ids[r]) for r in top[0][rng.random(60) < 0.5] if r >= 0}
            bought = {int(i) for i in rng.choice(ids, int(rng.integers(0, 6)))}
            hidden_items = {int(i) for i in rng.choice(ids, int(rng.integers(0, 4)))}
            hidden_kols: set[int] = set()
            live: dict[int, float] = {}
            if len(kol_ids):
                hidden_kols = {int(k) for k in rng.choice(kol_ids, int(rng.integers(0, 3)))}
                srow = m.social_users.row(uid)
                follows = m.user_follows.get(srow)
                if len(follows) and rng.random() < 0.3:
                    hidden_kols.add(int(kol_ids[follows[0]]))
                for k in rng.choice(kol_ids, int(rng.integers(0, 8))):
                    live[int(k)] = float(rng.normal() * 2)
                if rng.random() < 0.15:
                    live[int(rng.choice(kol_ids))] = float("inf")
                    live[424_242_424] = 1.0
                if len(follows) and rng.random() < 0.3:
                    live[int(kol_ids[follows[-1]])] = -3.0
            recent = [int(i) for i in rng.choice(ids, int(rng.integers(0, 8)))]
            if rng.random() < 0.1:
                recent.append(-5)
            fb: dict[int, int] | None = None
            if rng.random() < 0.6:
                fb = {int(i): int(rng.integers(0, 5)) for i in rng.choice(ids, int(rng.integers(0, 30)))}
                if rng.random() < 0.2:
                    fb[2**40] = 2
            exclude = (
                [int(i) for i in rng.choice(ids, int(rng.integers(0, 10)))] if rng.random() < 0.3 else []
            )
            limit = int(rng.choice([1, 5, 5, 20, 20, 20, 50, 60]))
            now = None if rng.random() < 0.7 else float(m.reference_time + rng.integers(-10, 40) * 86_400)
            cases.append(
                Case(
                    model=model_name,
                    variant=names[j % len(names)] if j % 3 else str(rng.choice(names)),
                    ctx=UserContext(
                        user_id=uid,
                        recent_items=recent,
                        seen=seen,
                        bought=bought,
                        hidden_items=hidden_items,
                        hidden_kols=hidden_kols,
                        live_kol_affinity=live,
                    ),
                    limit=limit,
                    exclude=exclude,
                    trending=trend_lists[int(rng.integers(len(trend_lists)))],
                    friends_bought=fb,
                    now=now,
                    with_ann=urow >= 0 and rng.random() < 0.15,
                )
            )
    return cases


def run_case(models: dict[str, FeedModel], rankers: dict[str, FeedRanker], case: Case) -> list[list[Any]]:
    m = models[case.model]
    v = variants()[case.variant]
    ann = None
    if case.with_ann:
        n_excl = len(case.ctx.seen | case.ctx.bought | case.ctx.hidden_items | set(case.exclude))
        k = min(m.n_items, v.candidates.ann_k + min(n_excl, 1000))
        if v.candidates.ann_k > 0:
            s, i = search(m.index, m.user_emb[m.users.row(case.ctx.user_id)][None, :], k)
            ann = (s[0], i[0])
    page = rankers[case.model].rank(
        case.ctx,
        v,
        case.limit,
        exclude=case.exclude,
        trending=case.trending,
        friends_bought=case.friends_bought,
        now=case.now,
        ann=ann,
    )
    return [
        [e.item_id, e.post_id, e.kol_id, round(e.score, SCORE_DECIMALS), e.reasons, e.source] for e in page
    ]


def compute() -> list[dict[str, Any]]:
    models = build_models()
    rankers = {name: FeedRanker(m) for name, m in models.items()}
    out = []
    for n, case in enumerate(make_cases(models)):
        out.append(
            {"case": n, "model": case.model, "variant": case.variant, "page": run_case(models, rankers, case)}
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", action="store_true", help=f"(re)write {GOLDEN}")
    args = p.parse_args()
    pages = compute()
    n_entries = sum(len(c["page"]) for c in pages)
    print(f"{len(pages)} cases, {n_entries} entries")
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        with GOLDEN.open("w") as fh:
            fh.write("[\n" + ",\n".join(json.dumps(c, separators=(",", ":")) for c in pages) + "\n]\n")
        print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()

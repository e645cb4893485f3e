"""FeedRanker on the hand-built tiny run (tests/ranking_fixtures.py): sources, filters, diversity,
reasons, cold start and variant weights, each with a known answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys import artifacts as A
from recsys.ranking import candidates as C
from recsys.ranking.context import FeedEntry, UserContext
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.filters import excluded_rows
from recsys.ranking.variants import RankingVariant, load_variants
from tests.ranking_fixtures import ALL_SOURCES, Tiny, category_of, kol_posts, make_tiny_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ranking"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> FeedModel:
    return FeedModel.load(make_tiny_run(tmp_path_factory.mktemp("tiny") / "run"))


@pytest.fixture(scope="module")
def ranker(model: FeedModel) -> FeedRanker:
    return FeedRanker(model)


def variant(**changes: Any) -> RankingVariant:
    """Default variant with KOL 15 alone counted as a 'new creator' and loose caps, unless changed."""
    data: dict[str, Any] = {
        "name": "test",
        "explore_max_followers": 0,
        "per_kol_cap": 100,
        "per_category_cap": 100,
    }
    cand = changes.pop("candidates", {})
    data.update(changes)
    data["candidates"] = cand
    return RankingVariant.model_validate(data)


def ctx(user_id: int = Tiny.USER, **kw: Any) -> UserContext:
    base: dict[str, Any] = {
        "recent_items": [],
        "seen": set(),
        "bought": set(),
        "hidden_items": set(),
        "hidden_kols": set(),
        "live_kol_affinity": {},
    }
    base.update(kw)
    return UserContext(user_id=user_id, **base)


def items_of(entries: list[FeedEntry]) -> list[int]:
    return [e.item_id for e in entries]


def entry_for(entries: list[FeedEntry], item_id: int) -> FeedEntry:
    found = [e for e in entries if e.item_id == item_id]
    assert len(found) == 1, f"item {item_id} appears {len(found)} times"
    return found[0]


# ------------------------------------------------------------------ model loading
def test_model_loads_world_tables(model: FeedModel) -> None:
    assert model.has_world
    assert model.categories == sorted(Tiny.CATS)
    row = model.items.row(Tiny.OUT_OF_STOCK_ITEM)
    assert not model.item_in_stock[row] and model.item_in_stock.sum() == Tiny.N_ITEMS - 1
    assert model.categories[model.item_category[model.items.row(1001)]] == category_of(1001)
    srow = model.social_users.row(Tiny.USER)
    assert set(model.kols.ids[model.user_follows.get(srow)]) == {Tiny.FOLLOWED_KOL}
    assert set(model.social_users.ids[model.user_friends.get(srow)]) == set(Tiny.FRIENDS)
    assert model.kol_followers[model.kols.row(Tiny.NEW_KOL)] == 0
    # the two-KOL item has one (best) post per KOL
    posts = model.item_posts.get(model.items.row(Tiny.TWO_KOL_ITEM))
    assert sorted(model.kols.ids[model.post_kol[posts]]) == [10, 12]


def test_corrupt_run_is_refused(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    with open(run / "catalog" / "posts.parquet", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(A.ArtifactError, match=r"checksum mismatch for catalog/posts\.parquet"):
        FeedModel.load(run)


def test_embeddings_only_run_without_index_works(tmp_path: Path) -> None:
    model = FeedModel.load(make_tiny_run(tmp_path / "run", with_world=False, with_index=False))
    assert not model.has_world and model.index.ntotal == Tiny.N_ITEMS
    entries = FeedRanker(model).rank(ctx(), variant(), 10)
    assert len(entries) == 10
    assert entries[0].item_id == Tiny.ANN_ITEM
    assert all(e.post_id is None and e.kol_id is None for e in entries)
    cold = FeedRanker(model).rank(ctx(Tiny.UNKNOWN_USER), variant(), 10)
    assert len(cold) == 10 and cold[0].item_id == Tiny.ITEM0  # most popular


# ------------------------------------------------------------------ candidate sources
def _sources(model: FeedModel, c: UserContext, v: RankingVariant, **kw: Any) -> dict[int, int]:
    sig = C.user_signals(model, c, v, kw.get("trending"), kw.get("friends_bought"))
    cand = C.generate(model, c, v, sig, n_filtered=len(excluded_rows(model, c)))
    return dict(zip(model.items.ids[cand.items].tolist(), cand.sources.tolist(), strict=True))


def test_each_candidate_source_appears(model: FeedModel) -> None:
    v = variant(
        candidates={
            "ann_k": 3,
            "trending_k": 2,
            "similar_to_recent": 2,
            "explore_slots": 1,
            "posts_per_kol": 20,
        }
    )
    src = _sources(model, ctx(recent_items=[1030]), v, trending=[(1033, 9.0), (1034, 1.0)])
    assert src[Tiny.ANN_ITEM] & C.ANN
    assert all(src[i] & C.FOLLOWED for i in kol_posts(Tiny.FOLLOWED_KOL))
    assert all(src[i] & C.AFFINITY for i in kol_posts(13))  # static affinity, not followed
    assert src[Tiny.FRIENDS_ITEM] & C.FRIENDS and src[Tiny.ONE_FRIEND_ITEM] & C.FRIENDS
    assert src[1033] & C.TRENDING and src[1034] & C.TRENDING
    assert src[1030] & C.SIMILAR
    assert any(src[i] & C.EXPLORE for i in kol_posts(Tiny.NEW_KOL))
    # the sources are selective: a KOL-11 item that is none of the above carries no KOL/friend bit
    assert not src.get(1007, 0) & (C.FOLLOWED | C.AFFINITY | C.FRIENDS)


def test_a_user_whose_embedding_row_is_zero_gets_no_ann_candidates(model: FeedModel) -> None:
    import copy

    v = variant(candidates={"ann_k": 3, "similar_to_recent": 2})
    assert any(bits & C.ANN for bits in _sources(model, ctx(), v).values())
    untrained = copy.copy(model)  # training writes zero rows for users without training data
    untrained.user_emb = model.user_emb.copy()
    untrained.user_emb[model.users.row(Tiny.USER)] = 0.0
    src = _sources(untrained, ctx(recent_items=[1030]), v)
    assert not any(bits & C.ANN for bits in src.values())
    assert src[1030] & C.SIMILAR  # served as a cold user: neighbours of what they just did


def test_followed_kol_source_takes_newest_posts(model: FeedModel) -> None:
    v = variant(candidates={"ann_k": 0, "trending_k": 0, "posts_per_kol": 4, "affinity_kols": 0})
    src = _sources(model, ctx(), v)
    followed = {i for i, s in src.items() if s & C.FOLLOWED}
    # KOL 10 posts items 0, 6, ..., 36 aged (i % 10) days, plus TWO_KOL_ITEM at age 0
    assert followed == {1000, 1030, Tiny.TWO_KOL_ITEM, 1012}


def test_trending_falls_back_to_run_popularity(model: FeedModel) -> None:
    v = variant(candidates={"ann_k": 0, "trending_k": 3})
    src = _sources(model, ctx(Tiny.UNKNOWN_USER), v)
    assert {i for i, s in src.items() if s & C.TRENDING} == {1000, 1001, 1002}


def test_live_affinity_and_service_friends_bought_are_sources(model: FeedModel) -> None:
    v = variant(candidates={"ann_k": 0, "trending_k": 0, "posts_per_kol": 20})
    src = _sources(model, ctx(Tiny.UNKNOWN_USER, live_kol_affinity={12: 4.0}), v, friends_bought={1020: 3})
    assert all(src[i] & C.AFFINITY for i in kol_posts(12))
    assert src[1020] & C.FRIENDS


# ------------------------------------------------------------------ filters
@pytest.mark.parametrize("field", ["seen", "bought", "hidden_items", "exclude"])
def test_each_filter_removes_its_items(ranker: FeedRanker, field: str) -> None:
    v = variant()
    before = items_of(ranker.rank(ctx(), v, 40))
    drop = {Tiny.ANN_ITEM, Tiny.FRIENDS_ITEM}
    assert drop <= set(before)
    if field == "exclude":
        after = items_of(ranker.rank(ctx(), v, 40, exclude=drop))
    else:
        after = items_of(ranker.rank(ctx(**{field: drop}), v, 40))
    assert not drop & set(after)
    assert len(after) == len(before) - 2


def test_out_of_stock_never_served(ranker: FeedRanker) -> None:
    for user in (*Tiny.USERS, Tiny.UNKNOWN_USER):
        assert Tiny.OUT_OF_STOCK_ITEM not in items_of(ranker.rank(ctx(user), variant(), 40))


def test_hidden_kol_is_dropped(ranker: FeedRanker) -> None:
    v = variant()
    before = ranker.rank(ctx(), v, 40)
    assert any(e.kol_id == Tiny.FOLLOWED_KOL for e in before)
    after = ranker.rank(ctx(hidden_kols={Tiny.FOLLOWED_KOL}), v, 40)
    assert all(e.kol_id != Tiny.FOLLOWED_KOL for e in after)
    # the product KOL 12 also posted stays, now promoted by KOL 12; KOL 10's other products go
    assert entry_for(after, Tiny.TWO_KOL_ITEM).kol_id == 12
    assert not (kol_posts(Tiny.FOLLOWED_KOL) - {Tiny.TWO_KOL_ITEM}) & set(items_of(after))


def test_negative_feedback_demotes_category(ranker: FeedRanker) -> None:
    v = variant(hide_demotion=0.5)
    hidden = 1004  # beauty
    target = 1008  # also beauty
    assert category_of(hidden) == category_of(target) == "beauty"
    before = entry_for(ranker.rank(ctx(), v, 40), target).score
    after = entry_for(ranker.rank(ctx(hidden_items={hidden}), v, 40), target).score
    assert after == pytest.approx(before - 0.5, abs=1e-4)


def test_negative_live_affinity_demotes_kol(ranker: FeedRanker) -> None:
    v = variant()
    base = {e.item_id: e.score for e in ranker.rank(ctx(), v, 40)}
    neg = {e.item_id: e.score for e in ranker.rank(ctx(live_kol_affinity={11: -3.0}), v, 40)}
    assert all(neg[i] < base[i] for i in kol_posts(11) if i in neg and i in base)


# ------------------------------------------------------------------ diversity
def test_one_product_once_with_best_post(ranker: FeedRanker, model: FeedModel) -> None:
    entries = ranker.rank(ctx(), variant(), 40)
    assert len(items_of(entries)) == len(set(items_of(entries)))
    best = entry_for(entries, Tiny.TWO_KOL_ITEM)
    assert best.kol_id == Tiny.FOLLOWED_KOL  # user 1 follows KOL 10, not KOL 12
    assert model.kols.ids[model.post_kol[model.post_ids.tolist().index(best.post_id)]] == Tiny.FOLLOWED_KOL


@pytest.mark.parametrize(("kol_cap", "cat_cap"), [(1, 100), (100, 2), (2, 3)])
def test_per_kol_and_per_category_caps_hold(ranker: FeedRanker, kol_cap: int, cat_cap: int) -> None:
    v = variant(per_kol_cap=kol_cap, per_category_cap=cat_cap)
    for user in (Tiny.USER, 4, Tiny.UNKNOWN_USER):
        entries = ranker.rank(ctx(user), v, 20)
        kols = [e.kol_id for e in entries if e.kol_id is not None]
        cats = [category_of(e.item_id) for e in entries]
        assert max(kols.count(k) for k in set(kols)) <= kol_cap
        assert max(cats.count(c) for c in set(cats)) <= cat_cap
        assert len(entries) == min(20, kol_cap * len(Tiny.KOLS), cat_cap * len(Tiny.CATS))


# ------------------------------------------------------------------ reasons
def test_reason_texts_appear_when_their_condition_holds(ranker: FeedRanker) -> None:
    v = variant(candidates={"explore_slots": 1})
    entries = ranker.rank(ctx(), v, 40, trending=[(1030, 10.0)])
    by_item = {e.item_id: e for e in entries}
    for e in entries:
        follows = "because you follow @kol_10" in e.reasons
        assert follows == (e.kol_id == Tiny.FOLLOWED_KOL), e
    assert "2 friends bought this" in by_item[Tiny.FRIENDS_ITEM].reasons
    assert "1 friend bought this" in by_item[Tiny.ONE_FRIEND_ITEM].reasons
    assert sum(any("friend" in r for r in e.reasons) for e in entries) == 2
    assert f"trending in {category_of(1030)}" in by_item[1030].reasons
    assert sum(any(r.startswith("trending") for r in e.reasons) for e in entries) == 1
    assert by_item[Tiny.ANN_ITEM].reasons[0] == "similar to items you liked"
    explore = [e for e in entries if e.source == "explore"]
    assert len(explore) == 1 and explore[0].kol_id == Tiny.NEW_KOL
    assert explore[0].reasons[0] == "new creator for you"
    assert sum("new creator for you" in e.reasons for e in entries) == 1
    engaged = [e for e in entries if e.kol_id == 13]
    assert engaged and all("you often engage with @kol_13" in e.reasons for e in engaged)


def test_service_friends_bought_gives_reason(ranker: FeedRanker) -> None:
    entries = ranker.rank(ctx(Tiny.UNKNOWN_USER), variant(), 40, friends_bought={1020: 3})
    assert "3 friends bought this" in entry_for(entries, 1020).reasons


# ------------------------------------------------------------------ cold start
@pytest.mark.parametrize("user", [Tiny.UNKNOWN_USER, Tiny.SOCIAL_ONLY_USER, 123456789])
def test_cold_start_gets_a_full_page(ranker: FeedRanker, user: int) -> None:
    for v in load_variants(CONFIGS).values():
        entries = ranker.rank(ctx(user), v, 10)
        assert len(entries) == 10
        assert len(set(items_of(entries))) == 10
        assert all(e.reasons for e in entries)


def test_cold_start_with_tiny_candidate_counts_is_backfilled(ranker: FeedRanker) -> None:
    v = variant(candidates={"ann_k": 0, "trending_k": 1, "followed_kol_posts": 0, "explore_slots": 0})
    entries = ranker.rank(ctx(Tiny.UNKNOWN_USER), v, 15)
    assert len(entries) == 15
    assert any(e.source == "popular" for e in entries)


def test_social_only_user_sees_followed_kol(ranker: FeedRanker) -> None:
    entries = ranker.rank(ctx(Tiny.SOCIAL_ONLY_USER), load_variants(CONFIGS)["default"], 10)
    assert entries[0].kol_id == 11 and "because you follow @kol_11" in entries[0].reasons


def test_recent_items_steer_an_unknown_user(ranker: FeedRanker) -> None:
    entries = ranker.rank(ctx(Tiny.UNKNOWN_USER, recent_items=[Tiny.ANN_ITEM]), variant(), 10)
    assert any(e.source == "similar" or "similar to items you liked" in e.reasons for e in entries)


def test_limit_and_empty_edge_cases(ranker: FeedRanker) -> None:
    assert ranker.rank(ctx(), variant(), 0) == []
    assert len(ranker.rank(ctx(), variant(), 1)) == 1
    everything = {Tiny.ITEM0 + i for i in range(Tiny.N_ITEMS)}
    assert ranker.rank(ctx(seen=everything), variant(), 10) == []


# ------------------------------------------------------------------ variant weights
def test_kol_weight_ranks_followed_kol_posts_higher(ranker: FeedRanker) -> None:
    shipped = load_variants(CONFIGS)
    user, kol = 4, 13  # user 4 follows KOL 13
    positions = {}
    for name in ("no_kol", "kol_heavy"):
        v = shipped[name].model_copy(update={"per_kol_cap": 100, "per_category_cap": 100})
        entries = ranker.rank(ctx(user), v, 40)
        positions[name] = np.mean([i for i, e in enumerate(entries) if e.kol_id == kol])
    assert positions["kol_heavy"] + 3 < positions["no_kol"], positions


def test_feed_entry_fields(ranker: FeedRanker) -> None:
    entries = ranker.rank(ctx(), load_variants(CONFIGS)["default"], 10)
    scores = [e.score for e in entries if e.source != "explore"]
    assert scores == sorted(scores, reverse=True)
    for e in entries:
        assert isinstance(e.item_id, int) and isinstance(e.score, float)
        assert e.source in ALL_SOURCES


def test_garbage_context_never_raises(ranker: FeedRanker) -> None:
    c = ctx(
        2**70,
        recent_items=[-5, 10**12],
        seen={-1, 10**15, 2**80},
        hidden_items={123, 2**90},
        hidden_kols={999, Tiny.FOLLOWED_KOL},
        live_kol_affinity={424242: 3.0, 11: float("inf"), 2**70: 1.0},
    )
    trending = [(5, 1.0), (1001, float("nan")), (2**70, 2.0)]
    entries = ranker.rank(c, variant(), 10, exclude={77}, trending=trending, friends_bought={8: 2, 2**70: 1})
    assert len(entries) == 10
    assert all(e.kol_id != Tiny.FOLLOWED_KOL for e in entries)


def test_synthetic_catalog_random_contexts_get_full_pages() -> None:
    from recsys.ranking.random_model import random_run, time_rank

    model = random_run(n_items=3000, n_users=300, n_kols=60, dim=16).feed_model()
    assert model.has_world and len(model.post_ids) == 6000
    out = time_rank(model, RankingVariant(name="default"), calls=60, limit=20)
    assert out["short_pages"] == 0 and out["calls"] == 60
    assert out["cpu_p50_ms"] > 0 and out["cpu_mean_ms"] > 0


def test_exploration_scales_with_the_page() -> None:
    from recsys.ranking.feed import explore_count

    assert [explore_count(n, 2) for n in (1, 2, 5, 10, 11, 20, 40, 100)] == [0, 1, 1, 1, 2, 2, 2, 2]
    assert explore_count(20, 0) == 0
    assert explore_count(3, 5) == 1


def test_best_post_per_item_matches_a_full_sort() -> None:
    """best_per_owner (reduceat) picks what sorting by (owner, -score) then taking the first would."""
    from recsys.ranking.scoring import best_per_owner

    rng = np.random.default_rng(5)
    for _ in range(200):
        owner = np.sort(rng.integers(0, 30, rng.integers(0, 80)))
        score = rng.integers(0, 4, len(owner)).astype(np.float32)  # many ties: the first must win
        order = np.lexsort((-score, owner))
        first = np.r_[True, owner[order][1:] != owner[order][:-1]] if len(owner) else np.zeros(0, bool)
        np.testing.assert_array_equal(best_per_owner(owner, score), order[first])


def test_in_sorted_is_isin() -> None:
    from recsys.ranking.filters import in_sorted

    rng = np.random.default_rng(6)
    for _ in range(200):
        table = np.unique(rng.integers(0, 50, rng.integers(0, 20)))
        items = rng.integers(-5, 60, rng.integers(0, 40))
        np.testing.assert_array_equal(in_sorted(items, table), np.isin(items, table))


def test_id_map_contiguous_fast_path_agrees_with_search() -> None:
    from recsys.row_maps import IdMap

    rng = np.random.default_rng(7)
    ids = rng.permutation(np.arange(1_000, 1_050, dtype=np.int64))  # contiguous, shuffled: fast path
    gappy = np.append(ids, 5_000)  # not contiguous: searchsorted path
    fast, slow = IdMap(ids), IdMap(gappy)
    assert fast._base == 1_000 and slow._base is None
    q = [999, 1_000, 1_049, 1_050, 1_020, -(2**63), 2**63 - 1, 5_000]
    expected = [-1, int(np.flatnonzero(ids == 1_000)[0]), int(np.flatnonzero(ids == 1_049)[0]), -1]
    expected += [int(np.flatnonzero(ids == 1_020)[0]), -1, -1]
    np.testing.assert_array_equal(fast.rows(q), [*expected, -1])
    np.testing.assert_array_equal(slow.rows(q), [*expected, 50])


def test_best_first_pieces_are_a_stable_sort() -> None:
    """PageBuilder visits candidates in exactly the order of a stable sort, ties and NaN included."""
    from recsys.ranking.diversity import _best_first

    rng = np.random.default_rng(8)
    for _ in range(300):
        key = rng.integers(0, 6, rng.integers(0, 120)).astype(np.float32)  # many ties
        if len(key) and rng.random() < 0.3:
            key[rng.random(len(key)) < 0.2] = np.nan
        k = int(rng.integers(1, 40))
        pieces = list(_best_first(key, k))
        got = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        np.testing.assert_array_equal(got, key.argsort(kind="stable"))
        assert not pieces or len(pieces[0]) >= min(k, len(key))


def test_union_sources_matches_unique_and_bitwise_or() -> None:
    from recsys.ranking.candidates import union_sources

    rng = np.random.default_rng(9)
    for _ in range(200):
        parts = [rng.integers(0, 50, rng.integers(1, 30)) for _ in range(rng.integers(1, 7))]
        bits = [int(b) for b in rng.choice([1, 2, 4, 8, 16, 32, 64, 128], len(parts))]
        rows, sources = union_sources(parts, bits)
        flags = np.repeat(np.array(bits, dtype=np.int64), [len(p) for p in parts])
        uniq, inv = np.unique(np.concatenate(parts), return_inverse=True)
        expected = np.zeros(len(uniq), dtype=np.int64)
        np.bitwise_or.at(expected, inv, flags)
        np.testing.assert_array_equal(rows, uniq)
        np.testing.assert_array_equal(sources, expected)


def test_csr_heads_and_expand_agree_with_per_row_slices() -> None:
    from recsys.row_maps import Csr

    rng = np.random.default_rng(10)
    n_rows = 30
    rows_of = rng.integers(0, n_rows, 200)
    csr = Csr.build(rows_of, rng.integers(0, 1000, 200), n_rows)
    for _ in range(100):
        rows = rng.integers(-3, n_rows + 3, rng.integers(0, 12))
        k = int(rng.integers(0, 6))
        expected = [csr.get(int(r))[:k] for r in rows]
        got = csr.heads(rows.tolist(), k)
        np.testing.assert_array_equal(got, np.concatenate(expected) if expected else np.zeros(0))
        valid = rows[(rows >= 0) & (rows < n_rows)]  # expand takes spans of valid rows
        lens = csr.indptr[valid + 1] - csr.indptr[valid]
        owner, entries = Csr.expand(csr.indptr[valid], lens)
        np.testing.assert_array_equal(lens, [len(csr.get(int(r))) for r in valid])
        np.testing.assert_array_equal(
            csr.indices[entries], np.concatenate([csr.get(int(r)) for r in valid] or [[]])
        )
        np.testing.assert_array_equal(owner, np.repeat(np.arange(len(valid)), lens))


def test_id_map_scalar_and_short_list_lookups_agree_with_the_vectorised_one() -> None:
    from recsys.row_maps import IdMap

    rng = np.random.default_rng(11)
    for ids in (
        np.arange(100, 140),  # contiguous, ascending: identity fast path
        rng.permutation(np.arange(100, 140)),  # contiguous, shuffled
        np.append(rng.permutation(np.arange(100, 140)), [7, 10**12]),  # gappy: searchsorted
    ):
        idmap = IdMap(ids)
        queries = [*ids[:5].tolist(), 99, 140, -1, 10**12, 2**63 - 1, -(2**63), 2**70]
        long = idmap._rows_array(queries)
        np.testing.assert_array_equal(idmap.rows(queries[:10]), long[:10])
        assert [idmap.row(q) for q in queries] == long.tolist()


def test_reused_trending_list_gives_the_same_pages(model: FeedModel) -> None:
    """The ranker spreads a trending list it sees again over all item rows (a gather per request
    instead of a search): pages must not change, and a new list must not reuse the old scores."""
    v = variant(candidates={"explore_slots": 1})
    trending = [(1030, 10.0), (1031, 4.0), (1012, 1.0), (5, 3.0)]
    first = FeedRanker(model).rank(ctx(), v, 30, trending=trending)
    ranker = FeedRanker(model)
    pages = [ranker.rank(ctx(), v, 30, trending=trending) for _ in range(3)]
    memo = ranker._trend_memo
    assert memo is not None and memo[0] is trending and memo[2] is not None  # dense scores in use
    assert all(p == first for p in pages)
    other = [(1033, 2.0)]
    assert ranker.rank(ctx(), v, 30, trending=other) == FeedRanker(model).rank(ctx(), v, 30, trending=other)
    assert ranker.rank(ctx(), v, 30) == FeedRanker(model).rank(ctx(), v, 30)  # trending=None


def test_item_post_facts_are_the_per_post_arrays(model: FeedModel) -> None:
    entries = np.arange(len(model.item_posts.indices))[::-1]
    post, kol, fit, created = model.item_post_facts(entries)
    posts = model.item_posts.indices[entries]
    np.testing.assert_array_equal(post, posts)
    np.testing.assert_array_equal(kol, model.post_kol[posts])
    assert fit.dtype == np.float32 and created.dtype == np.float64
    np.testing.assert_array_equal(fit, model.post_fit[posts])
    np.testing.assert_array_equal(created, model.post_created_at[posts])
    assert fit.max() == 1.0 and (fit > 0).all()  # the tiny world's fits are 1.0 / 0.1


def test_item_posts_and_category_match_the_csr_and_categories(model: FeedModel) -> None:
    items = np.array([5, 0, 39, 2, 2, 17], dtype=np.int64)
    owner, entries, lens, cat = model.item_posts_and_category(items)
    indptr = model.item_posts.indptr
    want_lens = indptr[items + 1] - indptr[items]
    want_owner = np.repeat(np.arange(len(items)), want_lens)
    want_entries = np.concatenate([np.arange(indptr[r], indptr[r + 1]) for r in items])
    np.testing.assert_array_equal(owner, want_owner)
    np.testing.assert_array_equal(entries, want_entries)
    np.testing.assert_array_equal(lens, want_lens)
    np.testing.assert_array_equal(cat, model.item_category[items])
    assert lens[3] == 2  # TWO_KOL_ITEM (row 2) has a post by KOL 10 and one by KOL 12


def test_explore_pool_is_the_newest_posts_of_small_creators(model: FeedModel) -> None:
    """The chunked walk over posts newest first equals sorting all small creators' posts by time
    (ties: lower post index first), for every follower bound and pool size, cut or not."""
    followers = model.kol_followers[model.post_kol]
    for max_followers in sorted({0, *followers.tolist(), int(followers.max()) + 1}):
        for size in (1, 3, 50, len(model.post_ids) + 5):
            small = np.flatnonzero(followers <= max_followers)
            expected = small[np.argsort(-model.post_created_at[small], kind="stable")][:size]
            got = model.explore_pool(max_followers, size)
            np.testing.assert_array_equal(got, expected, err_msg=f"{max_followers=} {size=}")
            assert model.explore_pool(max_followers, size) is got  # cached

"""Offline pipeline evaluation: known answers, fast path == ranker path, id mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.pipeline_eval import PipelineEvalError, _topk_slow, evaluate_pipeline, topk_fast
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.variants import RankingVariant
from tests.ranking_fixtures import Tiny, make_tiny_run


def _variant(**weights: float) -> RankingVariant:
    return RankingVariant.model_validate(
        {"name": "t", "weights": weights, "candidates": {"ann_k": 20, "trending_k": 10}}
    )


def _one_hot_world(n: int = 30) -> tuple[FeedModel, sp.csr_matrix, sp.csr_matrix]:
    """User u likes train item u most, then test item (u + 1) % n; everything else scores 0."""
    items = np.eye(n, dtype=np.float32)
    users = 3.0 * items + 2.0 * np.roll(items, 1, axis=1)
    model = FeedModel.from_arrays(users, items, np.arange(n) + 100, np.arange(n) + 500)
    train = sp.csr_matrix((np.ones(n), (np.arange(n), np.arange(n))), shape=(n, n))
    test = sp.csr_matrix((np.ones(n), (np.arange(n), (np.arange(n) + 1) % n)), shape=(n, n))
    return model, train, test


def test_known_answer_train_items_are_excluded() -> None:
    model, train, test = _one_hot_world()
    m = evaluate_pipeline(model, _variant(trending=0.0), train, test, k=1, progress=False)
    assert m["recall@1"] == 1.0 and m["hit@1"] == 1.0 and m["n_users"] == 30 and m["path"] == "fast"
    # without excluding train items the (seen) train item wins the first slot
    m0 = evaluate_pipeline(model, _variant(trending=0.0), None, test, k=1, progress=False)
    assert m0["recall@1"] == 0.0
    m1 = evaluate_pipeline(model, _variant(trending=0.0), None, test, ks=[1, 2], progress=False)
    assert m1["recall@2"] == 1.0


def test_fast_path_equals_ranker_path() -> None:
    rng = np.random.default_rng(3)
    nu, ni, d = 120, 600, 16
    pop = rng.pareto(1.5, size=ni).astype(np.float32)
    model = FeedModel.from_arrays(
        rng.normal(size=(nu, d)), rng.normal(size=(ni, d)), np.arange(nu), np.arange(ni) + 7, pop
    )
    train = sp.random(nu, ni, density=0.03, random_state=4, format="csr")
    seen = [np.unique(train[u].indices) for u in range(nu)]
    v = RankingVariant.model_validate({"name": "t", "candidates": {"ann_k": 30, "trending_k": 15}})
    fast = topk_fast(model, v, np.arange(nu), seen, 20)
    slow = _topk_slow(model, FeedRanker(model), v, model.users.ids, np.arange(nu), seen, 20)
    np.testing.assert_array_equal(fast, slow)
    for row, s in zip(fast, seen, strict=True):
        assert not np.isin(row, s).any()
        assert len(set(row.tolist())) == 20


def test_item_column_order_is_mapped() -> None:
    model, train, test = _one_hot_world()
    perm = np.random.default_rng(0).permutation(30)
    item_ids = model.items.ids[perm]  # matrix column j holds item perm[j]
    train_p = sp.csr_matrix(train[:, perm])
    test_p = sp.csr_matrix(test[:, perm])
    m = evaluate_pipeline(
        model, _variant(trending=0.0), train_p, test_p, item_ids=item_ids, k=1, progress=False
    )
    assert m["recall@1"] == 1.0


def test_world_run_goes_through_the_ranker(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    n_users, n_items = len(Tiny.USERS), Tiny.N_ITEMS
    rng = np.random.default_rng(1)
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    m = evaluate_pipeline(run, RankingVariant(name="default"), train, test, k=10, progress=False)
    assert m["path"] == "ranker" and m["n_users"] == n_users
    assert 0.0 <= m["recall@10"] <= 1.0
    with pytest.raises(PipelineEvalError, match="without world tables"):
        evaluate_pipeline(run, RankingVariant(name="default"), train, test, progress=False, fast=True)


def test_shape_mismatch_is_explained() -> None:
    model, _, _ = _one_hot_world()
    with pytest.raises(PipelineEvalError, match="item columns"):
        evaluate_pipeline(model, _variant(), None, sp.csr_matrix((30, 31)), progress=False)
    with pytest.raises(PipelineEvalError, match="user rows"):
        evaluate_pipeline(model, _variant(), None, sp.csr_matrix((29, 30)), progress=False)

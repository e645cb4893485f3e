"""Known-answer tests of the full-ranking metrics (hand-computed on tiny cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.metrics import evaluate, evaluate_topk


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    u = [i for i, r in enumerate(rows) for _ in r]
    c = [j for r in rows for j in r]
    return sp.csr_matrix((np.ones(len(c), dtype=np.float32), (u, c)), shape=(len(rows), n_items))


def test_topk_metrics_known_answer() -> None:
    test = _csr([[1, 3], [5], []], 6)
    top = np.array([[3, 0, 1], [0, 2, 5], [4, 4, 4]])
    got = evaluate_topk(top, test, ks=(1, 3))
    ndcg_u0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got["recall@3"] == pytest.approx(1.0)
    assert got["ndcg@3"] == pytest.approx((ndcg_u0 + 0.5) / 2)
    assert got["hit@3"] == pytest.approx(1.0)
    assert got["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    assert got["coverage@3"] == pytest.approx(5 / 6)  # user 2 has no test items: skipped entirely
    assert got["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["ndcg@1"] == pytest.approx(0.5)
    assert got["hit@1"] == pytest.approx(0.5)
    assert got["mrr@1"] == pytest.approx(0.5)
    assert got["coverage@1"] == pytest.approx(2 / 6)


def test_ndcg_ideal_is_capped_at_k() -> None:
    test = _csr([[0, 1, 2, 3]], 5)
    got = evaluate_topk(np.array([[0, 1]]), test, ks=(2,))
    assert got["ndcg@2"] == pytest.approx(1.0)
    assert got["recall@2"] == pytest.approx(0.5)


def test_padding_counts_as_miss() -> None:
    test = _csr([[2]], 4)
    got = evaluate_topk(np.array([[-1, 2]]), test, ks=(2,))
    assert got["mrr@2"] == pytest.approx(0.5)
    assert got["coverage@2"] == pytest.approx(0.25)


def test_evaluate_excludes_train_items_and_matches_topk() -> None:
    train = _csr([[0], [1]], 4)
    test = _csr([[2], [3]], 4)
    # Train items score highest; they must be skipped, so item 2 / item 3 come first.
    scores = np.array([[9.0, 0.0, 5.0, 1.0], [0.0, 9.0, 1.0, 5.0]], dtype=np.float32)
    got = evaluate(lambda users: scores[users], train, test, ks=(1,), batch_size=1)
    assert got["recall@1"] == pytest.approx(1.0)
    assert got["ndcg@1"] == pytest.approx(1.0)
    without_exclusion = evaluate(lambda users: scores[users], None, test, ks=(1,))
    assert without_exclusion["recall@1"] == pytest.approx(0.0)
    same = evaluate_topk(np.array([[2, 3], [3, 2]]), test, ks=(1,))
    assert same == got


def test_evaluate_rejects_bad_shapes() -> None:
    test = _csr([[0]], 3)
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda users: np.zeros((len(users), 2), dtype=np.float32), None, test)
    with pytest.raises(ValueError, match="no user"):
        evaluate_topk(np.zeros((1, 2), dtype=np.int64), _csr([[]], 3))


def test_a_large_catalogue_evaluates_in_smaller_batches_with_the_same_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import recsys.metrics as metrics

    rng = np.random.default_rng(0)
    scores = rng.random((50, 30)).astype(np.float32)
    train = _csr([[int(i % 30)] for i in range(50)], 30)
    test = _csr([[int((i * 7) % 30), int((i * 11) % 30)] for i in range(50)], 30)
    seen: list[int] = []

    def scorer(users: np.ndarray) -> np.ndarray:
        seen.append(len(users))
        return scores[users]

    whole = evaluate(scorer, train, test, ks=(5,), batch_size=1024)
    assert seen == [50]
    monkeypatch.setattr(metrics, "MAX_SCORE_CELLS", 30 * 8)  # at most 8 users of 30 items per batch
    seen.clear()
    assert evaluate(scorer, train, test, ks=(5,), batch_size=1024) == pytest.approx(whole)
    assert max(seen) == 8 and sum(seen) == 50

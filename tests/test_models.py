"""Known-answer tests of every registered model on tiny hand-made graphs, save/load and params."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.metrics import top_k_excluding
from recsys.models.base import Recommender
from recsys.models.graphfilter import GraphFilter
from recsys.models.registry import MODELS, ModelConfigError, create, load_model

FAST = {
    "popularity": {},
    "als": {"factors": 8, "iterations": 15, "regularization": 0.01, "alpha": 5.0},
    "bpr": {"factors": 8, "iterations": 200, "learning_rate": 0.05},
    "graphfilter": {"factors": 4},
}


def _two_communities() -> sp.csr_matrix:
    """Users 0-19 take items 0-9, users 20-39 items 10-19; user 0 never took item 0."""
    rows, cols = [], []
    for u in range(40):
        block = range(0, 10) if u < 20 else range(10, 20)
        for i in block:
            if (u, i) != (0, 0):
                rows.append(u)
                cols.append(i)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(40, 20))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_contract_and_round_trip(name: str, tmp_path: Path) -> None:
    train = _two_communities()
    model = create(name, FAST[name])
    assert isinstance(model, Recommender)
    model.fit(train)
    users = np.array([0, 5, 25])
    scores = model.score(users)
    assert scores.dtype == np.float32 and scores.shape == (3, 20)
    assert model.user_embeddings().shape[0] == 40
    assert model.item_embeddings().shape[0] == 20
    assert model.describe()["model"] == name
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.score(users), scores)


@pytest.mark.parametrize("name", ["als", "bpr", "graphfilter"])
def test_recommends_item_co_consumed_by_similar_users(name: str) -> None:
    train = _two_communities()
    model = create(name, FAST[name])
    model.fit(train)
    top = top_k_excluding(model.score(np.array([0])), train[[0]], 1)
    assert top[0, 0] == 0


def test_popularity_ranks_most_interacted_first() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=np.float32))
    model = create("popularity", {})
    model.fit(train)
    assert list(np.argsort(-model.score(np.array([0]))[0], kind="stable")) == [1, 2, 0]
    emb = model.user_embeddings() @ model.item_embeddings().T
    np.testing.assert_allclose(emb[0], [1, 3, 2])


def _dense_reference(r: np.ndarray, alpha: float, sharpen: list[float]) -> np.ndarray:
    du, di = r.sum(1), r.sum(0)
    rn = r / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    p = rn.T @ rn
    _, _, vt = np.linalg.svd(rn, full_matrices=False)
    ideal = r @ np.diag(di**-0.5) @ vt.T @ vt @ np.diag(di**0.5)
    s0 = r @ p + alpha * ideal
    poly = sum(c * np.linalg.matrix_power(p, j) for j, c in enumerate(sharpen))
    return s0 @ poly


def test_graphfilter_matches_dense_formulas() -> None:
    rng = np.random.default_rng(3)
    r = (rng.random((12, 7)) < 0.4).astype(np.float32)
    r[:, r.sum(0) == 0] = 1.0
    r[r.sum(1) == 0, 0] = 1.0
    train = sp.csr_matrix(r)
    gfcf = GraphFilter({"factors": 7, "ideal_weight": 0.3, "sharpen_time": 0.0})
    gfcf.fit(train)
    np.testing.assert_allclose(gfcf.score(np.arange(12)), _dense_reference(r, 0.3, [1.0]), atol=1e-4)
    h = 0.7
    bspm = GraphFilter({"factors": 7, "ideal_weight": 0.2, "sharpen_time": h, "sharpen_solver": "rk4"})
    bspm.fit(train)
    rk4 = [(-h) ** j / math.factorial(j) for j in range(5)]
    exact = bspm.score(np.arange(12))
    np.testing.assert_allclose(exact, _dense_reference(r, 0.2, rk4), atol=1e-4)
    # With every singular vector kept, the retrieval embeddings reproduce the exact scores.
    emb = bspm.user_embeddings() @ bspm.item_embeddings().T
    np.testing.assert_allclose(emb, exact, atol=1e-4)


def test_unknown_param_names_the_key() -> None:
    with pytest.raises(ModelConfigError, match="factorz"):
        create("als", {"factorz": 3})
    with pytest.raises(ModelConfigError, match="ideal_weight"):
        create("graphfilter", {"ideal_weight": "lots"})
    with pytest.raises(ModelConfigError, match="nope"):
        create("nope", {})


def test_load_rejects_non_model_dir(tmp_path: Path) -> None:
    from recsys.models.registry import ModelFileError

    with pytest.raises(ModelFileError, match=r"model\.json"):
        load_model(tmp_path)

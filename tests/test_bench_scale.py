"""The scale benchmark's generated split: exact size, LightGCN format, learnable structure."""

from __future__ import annotations

from pathlib import Path

from kolfeed.bench.scale import structured_split
from recsys.datasets.lightgcn import load_lightgcn


def test_structured_split_has_the_requested_size_and_loads(tmp_path: Path) -> None:
    stats = structured_split(tmp_path, 500, 800, 12_000, clusters=20, seed=3)
    assert stats["interactions"] == 12_000
    data = load_lightgcn(tmp_path)
    assert data.train.nnz + data.test.nnz == 12_000
    assert data.train.multiply(data.test).nnz == 0  # disjoint split
    again = tmp_path / "again"
    structured_split(again, 500, 800, 12_000, clusters=20, seed=3)
    assert (again / "train.txt").read_text() == (tmp_path / "train.txt").read_text()


def test_structured_split_is_learnable_beyond_popularity(tmp_path: Path) -> None:
    from recsys.metrics import evaluate
    from recsys.models.registry import create

    structured_split(tmp_path, 600, 1000, 15_000, clusters=50, seed=1)
    data = load_lightgcn(tmp_path)
    scores = {}
    for name, params in (("popularity", {}), ("graphfilter", {"factors": 16})):
        model = create(name, params)
        model.fit(data.train)
        scores[name] = evaluate(model, data.train, data.test, ks=(20,))["recall@20"]
    assert scores["graphfilter"] > 2 * scores["popularity"], scores

"""Precomputed user neighbours (recsys/user_neighbours.py): the ranker reads them instead of searching,
serves the same pages, searches again when a request needs more of them, and never uses a table
that belongs to another index or other search parameters."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys import artifacts as A
from recsys import user_neighbours as UN
from recsys.index import build_index, build_run_index, search_ids
from recsys.ranking import candidates
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from tests.rank_golden_cases import build_models, make_cases, run_case
from tests.ranking_fixtures import make_tiny_run


def with_table(m: FeedModel, k: int) -> FeedModel:
    """``m`` with a table of ``k`` (a shallow copy: the derived lookups are shared, not rebuilt)."""
    out = copy.copy(m)
    out.user_neighbours = UN.compute(m.index, m.user_emb, k)
    return out


@pytest.fixture()
def full_searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The k of every full-effort search the ranker makes (the main ANN; recent-item searches use less)."""
    calls: list[int] = []
    real = candidates.search_ids

    def spy(index: Any, query: np.ndarray, k: int, effort: float = 1.0) -> np.ndarray:
        if effort >= 1.0:
            calls.append(k)
        return real(index, query, k, effort)

    monkeypatch.setattr(candidates, "search_ids", spy)
    return calls


def test_compute_is_each_users_search_and_skips_cold_users() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    users = rng.normal(size=(40, 8)).astype(np.float32)
    users[5] = 0.0  # no training data: never searched by the ranker
    index = build_index(items, "Flat")
    table = UN.compute(index, users, 25, batch=7)  # several batches
    assert table.shape == (40, 25) and table.dtype == np.int32
    assert (table[5] == -1).all()
    for u in (0, 6, 39):
        assert table[u].tolist() == search_ids(index, users[u], 25)[0].tolist()
    # a search for fewer is the prefix of the table's row
    assert table[3, :10].tolist() == search_ids(index, users[3], 10)[0].tolist()
    assert UN.compute(index, users, 1000).shape == (40, 300)  # never wider than the catalog


def test_golden_pages_are_the_same_with_the_table(full_searches: list[int]) -> None:
    models = build_models()
    cases = make_cases(models)
    plain = {name: FeedRanker(m) for name, m in models.items()}
    want = [run_case(models, plain, case) for case in cases]
    searched_without = len(full_searches)
    assert searched_without > 0

    tabled = {name: with_table(m, 256) for name, m in models.items()}
    rankers = {name: FeedRanker(m) for name, m in tabled.items()}
    full_searches.clear()
    got = [run_case(tabled, rankers, case) for case in cases]
    assert got == want
    # only requests needing more than 256 neighbours (many filtered items) still search
    assert all(k > 256 for k in full_searches)
    assert len(full_searches) < searched_without


def test_a_request_needing_more_neighbours_searches(full_searches: list[int]) -> None:
    models = build_models()
    m = models["world"]
    case = next(
        c
        for c in make_cases(models)
        if c.model == "world"
        and not c.with_ann
        and c.variant == "default"
        and m.users.row(c.ctx.user_id) >= 0
    )
    want = run_case(models, {"world": FeedRanker(m)}, case)
    narrow = with_table(m, 8)
    full_searches.clear()
    got = run_case({"world": narrow}, {"world": FeedRanker(narrow)}, case)
    assert full_searches and all(k > 8 for k in full_searches)  # ann_k alone is above 8
    assert got == want


def _ivf_run(tmp_path: Path) -> Path:
    run = make_tiny_run(tmp_path / "run")
    build_run_index(run, "IVF2,Flat", nprobe=2, recall_queries=10, user_neighbours_k=16)
    return run


def test_index_build_writes_a_table_the_model_loads(tmp_path: Path, full_searches: list[int]) -> None:
    run = _ivf_run(tmp_path)
    info = json.loads((run / UN.INFO).read_text())
    assert info["k"] == 16 and info["search"] == {"nprobe": 2}
    assert UN.TABLE in A.verify_run_dir(run).files  # checksummed with the rest of the run
    m = FeedModel.load(run)
    assert m.user_neighbours is not None and m.user_neighbours.shape == (len(m.users), 16)
    rows = np.flatnonzero(m.user_emb.any(axis=1))
    for r in rows:
        assert m.user_neighbours[r].tolist() == search_ids(m.index, m.user_emb[r], 16)[0].tolist()


def test_a_table_of_another_index_or_search_setting_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _ivf_run(tmp_path)
    manifest = A.verify_run_dir(run)
    # retuned: index.json now asks for another nprobe than the table was searched with
    index_info = json.loads((run / "index.json").read_text())
    (run / "index.json").write_text(json.dumps({**index_info, "nprobe": 1}))
    A.write_manifest(run, manifest)
    with caplog.at_level("WARNING"):
        assert FeedModel.load(run).user_neighbours is None
    assert "searched with" in caplog.text
    # rebuilt without a table (user_neighbours_k=0): the old table is removed, not left stale
    build_run_index(run, "Flat", recall_queries=10, user_neighbours_k=0)
    assert not (run / UN.TABLE).exists() and not (run / UN.INFO).exists()
    assert FeedModel.load(run).user_neighbours is None
    # another index file than the one recorded: not used either
    build_run_index(run, "Flat", recall_queries=10, user_neighbours_k=8)
    info = json.loads((run / UN.INFO).read_text())
    (run / UN.INFO).write_text(json.dumps({**info, "index_sha256": "0" * 64}))
    A.write_manifest(run, A.read_manifest(run))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert FeedModel.load(run).user_neighbours is None
    assert "another index.faiss" in caplog.text


def test_a_table_over_the_size_budget_is_not_written(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    m = FeedModel.load(run)
    out = UN.write(run, m.index, m.user_emb, 16, max_mb=1e-6)
    assert "MB >" in str(out["skipped"]) and not (run / UN.TABLE).exists()

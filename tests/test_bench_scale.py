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


def test_engine_bench_data_is_a_world_with_an_event_export_both_engines_read(tmp_path: Path) -> None:
    from kolfeed.bench.engines import generate, parse_count
    from recsys.io.world import load_world
    from training.config import config_from_dict
    from training.data import prepare

    sizes = generate(tmp_path, 20_000, days=4, seed=1)
    assert sizes["events"] == 20_000 and len(list((tmp_path / "export").glob("date=*/*.parquet"))) == 4
    assert load_world(tmp_path).events.num_rows == 0  # all events come through data.events_path
    cfg = config_from_dict(
        {"data": {"path": str(tmp_path), "events_path": str(tmp_path / "export")}, "model": {"name": "als"}}
    )
    prepared = prepare(cfg)
    assert prepared.stats["n_train_events"] + prepared.stats["n_test_events"] == 20_000
    assert parse_count("10M") == 10_000_000 and parse_count("500k") == 500_000


def test_engine_bench_refuses_a_count_it_cannot_read() -> None:
    import pytest

    from kolfeed.bench.engines import parse_count

    with pytest.raises(ValueError, match="--events 'ten'"):
        parse_count("ten")


def test_engine_bench_memory_budget_stops_a_tree_that_outgrows_it() -> None:
    """The budget is enforced on the whole process tree: a child holding 300 MB under a 150 MB budget
    is killed and marked; under a generous budget the same child runs to its end."""
    import subprocess
    import sys

    from kolfeed.bench.engines import TreeMemory

    hold = "import sys, time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(2)"
    child = subprocess.Popen([sys.executable, "-c", hold])
    with TreeMemory(child.pid, every=0.05, limit_mb=150) as memory:
        child.wait(timeout=60)
    assert child.returncode == -9 and memory.over_limit_at is not None
    assert memory.peak["total_mb"] > 150

    child = subprocess.Popen([sys.executable, "-c", hold])
    with TreeMemory(child.pid, every=0.05, limit_mb=4096) as memory:
        child.wait(timeout=60)
    assert child.returncode == 0 and memory.over_limit_at is None
    assert memory.peak["total_mb"] > 300

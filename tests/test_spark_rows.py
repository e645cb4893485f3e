"""The Spark engine reports the rows it read, kept and skipped exactly as the local engine does (per
table and reason), and stops a run above ``data.max_skipped_fraction`` before building anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.spark_fixtures import local_spark
from training.config import TrainConfig, config_from_dict

pytestmark = pytest.mark.slow

spark = pytest.fixture(scope="session", name="spark")(local_spark)


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated world + export with bad rows of every kind the export check and intake count: a
    missing user, an unknown action, a repeated (replica, worker, seq), an item the catalogue lacks;
    and a history table with a bad and a null row."""
    from kolfeed.bench.engines import START_TS, generate

    root = tmp_path_factory.mktemp("dirty_world")
    generate(root, 3000, days=3, seed=2)
    part = sorted((root / "export").glob("date=*/part-0.parquet"))[0]
    table = pq.read_table(part)
    good = table.slice(0, 1).to_pylist()[0]
    extra = [
        {**good, "user_id": None, "seq": 10_000_001},
        {**good, "action": "teleport", "seq": 10_000_002},
        {**good, "action": "wave", "seq": 10_000_003},
        dict(good),  # the first row again: same (replica, worker, seq)
        {**good, "item_id": 99_999_999, "seq": 10_000_004},
    ]
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist(extra, table.schema)]), part)
    users = pq.read_table(root / "users.parquet").column("user_id").to_numpy()
    items = pq.read_table(root / "items.parquet").column("item_id").to_numpy()
    history = pa.table(
        {
            "ts": pa.array([START_TS - 100, None, START_TS - 50, START_TS - 20], pa.int64()),
            "user_id": pa.array(np.r_[users[:4]], pa.int64()),
            "item_id": pa.array(np.r_[items[:4]], pa.int64()),
            "action": pa.array(["click", "click", "jump", "buy"], pa.string()),
        }
    )
    pq.write_table(history, root / "events.parquet")
    return root


def _config(root: Path, engine: str, **data: Any) -> TrainConfig:
    return config_from_dict(
        {
            "name": "spark_rows",
            "data": {"path": str(root), "events_path": str(root / "export"), **data},
            "model": {"name": "als", "params": {"factors": 8, "iterations": 2}},
            "eval": {"ks": [20]},
            "engine": {"name": engine},
        }
    )


def test_spark_rows_report_equals_the_local_engines(spark: Any, dirty_world: Path) -> None:
    from training.data import prepare
    from training.spark.engine import SparkEngine

    local = prepare(_config(dirty_world, "local")).rows
    remote = SparkEngine(_config(dirty_world, "spark")).read()
    assert local is not None
    expected = local.to_dict()
    assert remote.to_dict() == expected
    assert remote.lines() == local.lines()
    exported = expected["tables"]["event_export"]["skipped"]
    assert exported == {
        "missing user_id": 1,
        "unknown action": 2,
        "repeated (replica, worker, seq)": 1,
        "item not in the catalogue": 1,
    }
    assert expected["tables"]["events"]["skipped"] == {"null ts": 1, "bad action": 1}
    assert expected["tables"]["events"]["examples"] == {"null ts": [2], "bad action": [3]}
    assert expected["rows_skipped"] == 7


def test_spark_run_stops_above_max_skipped_fraction_before_building_graphs(
    spark: Any, dirty_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import run as run_module
    from training.spark import graphs

    def never(*_: Any, **__: Any) -> None:
        raise AssertionError("graphs were built although the rows report is over the threshold")

    monkeypatch.setattr(graphs, "build", never)
    cfg = _config(dirty_world, "spark", max_skipped_fraction=0.0001)
    with pytest.raises(run_module.TrainError) as failed:
        run_module.train(cfg, tmp_path / "runs", quiet=True)
    message = str(failed.value)
    assert "data.max_skipped_fraction=0.0001" in message
    assert "skipped 2 (unknown action)" in message and "skipped 1 (null ts), e.g. rows 2" in message
    assert not [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]


def test_spark_run_directory_records_the_rows_report(spark: Any, dirty_world: Path, tmp_path: Path) -> None:
    from recsys import artifacts as art
    from training.run import train

    result = train(_config(dirty_world, "spark", max_skipped_fraction=0.01), tmp_path / "runs", quiet=True)
    manifest = art.verify_run_dir(result.run_dir)
    assert manifest.data_rows["rows_skipped"] == 7
    assert manifest.data_rows["tables"]["event_export"]["skipped"]["unknown action"] == 2
    log = (result.run_dir / art.LOG).read_text()
    assert "skipped 1 (missing user_id)" in log


def test_a_world_without_a_required_table_is_the_same_clear_error_on_both_engines(
    spark: Any, dirty_world: Path, tmp_path: Path
) -> None:
    import shutil

    from recsys.io.errors import TableError
    from recsys.io.world import load_world
    from training.spark.world import read_world

    root = tmp_path / "world"
    shutil.copytree(dirty_world, root)
    for path in root.glob("users.*"):
        path.unlink()
    with pytest.raises(TableError) as local:
        load_world(root)
    with pytest.raises(TableError) as on_spark:
        read_world(spark, root, None, 0.2)
    assert "required table 'users' not found" in str(local.value)
    assert str(on_spark.value) == str(local.value)

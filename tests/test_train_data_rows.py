"""Nothing dropped silently: every train run reports rows read, kept and skipped (stdout, train.log,
manifest.json) and fails above ``data.max_skipped_fraction``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys import artifacts as art
from training.config import config_from_dict
from training.run import TrainError, train


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(scale_config("tiny", {"n_users": 300, "days": 8}), 1, out, scale="tiny", progress=False)
    return out


def _world_with_broken_train_rows(src: Path, dst: Path, every: int) -> int:
    """A copy of ``src`` whose split/train is a CSV with every ``every``-th row's action mangled."""
    shutil.copytree(src, dst)
    train_file = dst / "split" / "train.parquet"
    table = pq.read_table(train_file)
    actions = table.column("action").to_pylist()
    broken = 0
    for i in range(0, len(actions), every):
        actions[i] = "teleport"
        broken += 1
    import pyarrow as pa

    table = table.set_column(table.schema.get_field_index("action"), "action", pa.array(actions))
    train_file.unlink()
    pcsv.write_csv(table, dst / "split" / "train.csv")
    return broken


def _cfg(world: Path, **data: object) -> dict[str, object]:
    return {
        "name": "rows",
        "data": {"path": str(world), "format": "world", **data},
        "model": {"name": "popularity"},
        "affinity": {"top_n": 5},
    }


def test_a_third_of_rows_malformed_fails_the_run_and_shows_the_report(
    tiny_world: Path, tmp_path: Path
) -> None:
    world = tmp_path / "w"
    broken = _world_with_broken_train_rows(tiny_world, world, every=3)
    with pytest.raises(TrainError) as err:
        train(config_from_dict(_cfg(world)), tmp_path / "runs", quiet=True)
    text = str(err.value)
    assert "data.max_skipped_fraction=0.01" in text
    assert f"skipped {broken:,} (bad action)" in text
    assert "split/train" in text
    assert not list((tmp_path / "runs").iterdir())


def test_accepted_skips_are_reported_on_stdout_in_train_log_and_in_the_manifest(
    tiny_world: Path, tmp_path: Path
) -> None:
    from kolfeed import commands_train

    world = tmp_path / "w"
    broken = _world_with_broken_train_rows(tiny_world, world, every=50)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(_cfg(world, max_skipped_fraction=0.05)))

    import typer

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    commands_train.register(app)
    res = CliRunner().invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "runs"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"skipped {broken:,} (bad action)" in res.output
    run_dir = Path(res.output.strip().splitlines()[-1])
    manifest = art.verify_run_dir(run_dir)
    rows = manifest.data_rows
    assert rows["rows_skipped"] == broken and rows["skipped"] == {"bad action": broken}
    assert rows["rows_read"] == rows["rows_kept"] + broken
    assert rows["tables"]["split/train"]["skipped_rows"] == broken
    assert f"skipped {broken:,} (bad action)" in (run_dir / art.LOG).read_text()


def test_a_clean_world_reports_every_row_kept(tiny_world: Path, tmp_path: Path) -> None:
    result = train(config_from_dict(_cfg(tiny_world)), tmp_path / "runs", quiet=True)
    assert result.data_rows is not None
    assert result.data_rows.read == result.data_rows.kept > 0
    n_split = sum(pq.read_metadata(tiny_world / "split" / f"{p}.parquet").num_rows for p in ("train", "test"))
    assert (
        result.data_rows.tables["split/train"].total_rows + result.data_rows.tables["split/test"].total_rows
        == n_split
    )
    assert "events" not in result.data_rows.tables  # the split is what this run trained and evaluated on


def test_a_retrain_from_the_event_log_reports_the_logs_skips_beside_the_world_history(
    tiny_world: Path, tmp_path: Path
) -> None:
    from features.base import StoreEvent
    from features.eventlog import EventLog

    users = pq.read_table(tiny_world / "users.parquet").column("user_id").to_pylist()
    items = pq.read_table(tiny_world / "items.parquet").column("item_id").to_pylist()
    start = 2_000_000_000.0
    logged = [StoreEvent(ts=start + i, user_id=users[i], item_id=items[i], action="click") for i in range(20)]
    logged.append(StoreEvent(ts=start + 30, user_id=users[0], item_id=10**12, action="buy"))  # not listed
    log = EventLog(tmp_path / "log")
    log.append_batch(logged)
    log.close()
    result = train(
        config_from_dict(_cfg(tiny_world, events_log=str(tmp_path / "log"))), tmp_path / "runs", quiet=True
    )
    assert result.data_rows is not None
    tables = result.data_rows.tables
    assert "split/train" not in tables and "events" in tables  # the history is read once, as events
    assert tables["event_log"].total_rows == 21 and tables["event_log"].kept_rows == 20
    assert result.data_rows.skipped == {"item not in the catalogue": 1}
    manifest = art.verify_run_dir(result.run_dir)
    assert manifest.data_rows["rows_skipped"] == 1


def test_a_benchmark_format_run_says_its_loader_is_strict(tmp_path: Path) -> None:
    data = tmp_path / "lgcn"
    data.mkdir()
    (data / "train.txt").write_text("0 0 1 2\n1 1 2 3\n2 0 3\n")
    (data / "test.txt").write_text("0 3\n1 0\n2 1\n")
    cfg = {
        "name": "strict",
        "data": {"path": str(data), "format": "lightgcn"},
        "model": {"name": "popularity"},
    }
    result = train(config_from_dict(cfg), tmp_path / "runs", quiet=True)
    assert result.data_rows is not None
    assert result.data_rows.lines() == [
        "data: lightgcn files are read strictly (a malformed line stops the run), so nothing was skipped"
    ]
    assert art.verify_run_dir(result.run_dir).data_rows["strict_format"] == "lightgcn"

"""`kolfeed report experiment|kols`: text and JSON output, loud SRM warning, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from kolfeed import commands_report
from recsys.experiments.assignment import assign_many
from recsys.experiments.config import load_experiment
from recsys.schema import EVENTS
from tests.service_harness import cli_app

EXP_YAML = """
name: demo
salt: demo-salt
control: control
arms:
  - {name: control, variant: default, share: 0.5}
  - {name: treat, variant: kol_heavy, share: 0.5}
"""


def _app() -> typer.Typer:
    return cli_app(commands_report)


def _write_events(path: Path, users: np.ndarray) -> None:
    n = len(users)
    rng = np.random.default_rng(0)
    clicks = rng.random(n) < 0.2
    ts = np.concatenate([np.full(n, 100), np.full(int(clicks.sum()), 101)])
    uid = np.concatenate([users, users[clicks]])
    action = ["impression"] * n + ["click"] * int(clicks.sum())
    m = len(uid)
    table = pa.table(
        {
            "ts": ts,
            "user_id": uid,
            "item_id": np.ones(m, dtype=np.int64),
            "action": action,
            "post_id": [None] * m,
            "kol_id": [None] * m,
            "to_user_id": [None] * m,
            "request_id": [None] * m,
            "value": [None] * m,
        },
        schema=EVENTS.arrow_schema(),
    )
    pq.write_table(table, path)


def test_experiment_report_text_json_and_srm(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "exps"
    cfg_dir.mkdir()
    (cfg_dir / "demo.yaml").write_text(EXP_YAML)
    exp = load_experiment(cfg_dir / "demo.yaml")
    users = np.arange(4000)
    arms = assign_many(users, exp)
    balanced, skewed = tmp_path / "ok.parquet", tmp_path / "srm.parquet"
    _write_events(balanced, users)
    treat = np.flatnonzero(arms == "treat")
    _write_events(skewed, np.setdiff1d(users, treat[: len(treat) // 5]))
    runner = CliRunner()

    res = runner.invoke(
        _app(), ["report", "experiment", "demo", "--events", str(balanced), "--config-dir", str(cfg_dir)]
    )
    assert res.exit_code == 0, res.output
    assert "treat vs control:" in res.stdout and "ctr" in res.stdout
    assert "SAMPLE RATIO MISMATCH" not in res.stderr

    args = ["report", "experiment", "demo", "--events", str(skewed), "--config-dir", str(cfg_dir), "--json"]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert "WARNING: SAMPLE RATIO MISMATCH" in res.stderr
    data = json.loads(res.stdout)
    assert data["srm_warning"] is True
    assert [a["name"] for a in data["arms"]] == ["control", "treat"]
    assert data["arms"][0]["users"] == int((arms == "control").sum())


def test_experiment_errors_are_one_line(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "exps"
    cfg_dir.mkdir()
    (cfg_dir / "bad.yaml").write_text(EXP_YAML.replace("name: demo", "name: bad\ncolour: red"))
    res = CliRunner().invoke(
        _app(), ["report", "experiment", "bad", "--events", "x.parquet", "--config-dir", str(cfg_dir)]
    )
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [f"error: {cfg_dir / 'bad.yaml'}: unknown key 'colour'"]

    (cfg_dir / "bad.yaml").unlink()
    (cfg_dir / "demo.yaml").write_text(EXP_YAML)
    res = CliRunner().invoke(
        _app(),
        [
            "report",
            "experiment",
            "demo",
            "--events",
            str(tmp_path / "none.parquet"),
            "--config-dir",
            str(cfg_dir),
        ],
    )
    assert res.exit_code == 1 and "none.parquet" in res.stderr and "Traceback" not in res.output


def test_kols_report_from_a_world_directory(tmp_path: Path) -> None:
    from tests.attribution_fixtures import events_table

    pq.write_table(events_table(), tmp_path / "events.parquet")
    (tmp_path / "costs.csv").write_text("kol_id,cost\n7,2.5\n")
    args = [
        "report",
        "kols",
        "--events",
        str(tmp_path),
        "--commission",
        "0.1",
        "--costs",
        str(tmp_path / "costs.csv"),
    ]
    res = CliRunner().invoke(_app(), [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["balanced"] is True and data["log_gmv"] == 67.0
    assert data["kols"][0]["kol_id"] == "7" and data["kols"][0]["roi"] == 2.0
    res = CliRunner().invoke(_app(), [*args, "--top", "1"])
    assert res.exit_code == 0, res.output
    assert "balanced" in res.stdout and "1 more KOLs" in res.stdout and "unattributed: 1 buys" in res.stdout
    res = CliRunner().invoke(_app(), ["report", "kols", "--events", str(tmp_path), "--commission", "2"])
    assert res.exit_code == 1 and res.stderr.splitlines()[-1].startswith("error: commission rate")


def test_experiment_report_reads_the_services_event_log(tmp_path: Path) -> None:
    from features.base import StoreEvent
    from features.eventlog import EventLog

    cfg_dir = tmp_path / "exps"
    cfg_dir.mkdir()
    (cfg_dir / "demo.yaml").write_text(EXP_YAML)
    log_dir = tmp_path / "var" / "eventlog"
    log = EventLog(log_dir)
    try:
        users = range(400)
        log.append_batch(StoreEvent(ts=100.0, user_id=u, item_id=1, action="impression") for u in users)
        log.append_batch(
            StoreEvent(ts=101.0, user_id=u, item_id=1, action="click") for u in users if u % 5 == 0
        )
    finally:
        log.close()
    args = ["report", "experiment", "demo", "--events", str(log_dir), "--config-dir", str(cfg_dir), "--json"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert sum(a["users"] for a in data["arms"]) == 400


def test_kols_report_names_string_creators_from_the_files_or_a_run_s_labels(tmp_path: Path) -> None:
    from features.eventlog import EventLog
    from tests.string_id_fixtures import (
        Shop,
        creator_sales_events,
        creator_sales_store_events,
        make_string_id_run,
    )

    run = make_string_id_run(tmp_path / "run")
    pq.write_table(creator_sales_events(), tmp_path / "events.parquet")
    log = EventLog(tmp_path / "eventlog")
    try:
        log.append_batch(creator_sales_store_events())
    finally:
        log.close()
    (tmp_path / "costs.csv").write_text(f"kol_id,cost\n{Shop.kol(10)},6\n")
    common = ["--commission", "0.1", "--costs", str(tmp_path / "costs.csv"), "--json"]

    def kols(events: Path, *more: str) -> list[dict[str, object]]:
        res = CliRunner().invoke(_app(), ["report", "kols", "--events", str(events), *common, *more])
        assert res.exit_code == 0, res.output
        rows: list[dict[str, object]] = json.loads(res.stdout)["kols"]
        return rows

    names = [Shop.kol(10), Shop.kol(11)]
    from_file = kols(tmp_path / "events.parquet")  # the file spells the ids
    assert [k["kol_id"] for k in from_file] == names
    assert from_file[0]["roi"] == 0.5  # 0.1 x 30 / 6: the costs file names the creator by its string id
    assert [k["kol_id"] for k in kols(tmp_path / "eventlog", "--run", str(run))] == names
    unnamed = kols(tmp_path / "eventlog")  # the log holds keys only, and no run names them
    assert all(str(k["kol_id"]).startswith("?-") for k in unnamed)
    text = CliRunner().invoke(
        _app(), ["report", "kols", "--events", str(tmp_path / "eventlog"), "--run", str(run)]
    )
    assert text.exit_code == 0 and Shop.kol(11) in text.stdout
    res = CliRunner().invoke(
        _app(), ["report", "kols", "--events", str(tmp_path / "eventlog"), "--run", str(tmp_path)]
    )
    assert res.exit_code == 1 and "--run must be a run directory" in res.output

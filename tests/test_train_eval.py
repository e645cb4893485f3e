"""Evaluation paths of a run: the served pipeline beside the model, sampled users, the event log as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kolfeed.cli import _register, app
from tests.world_fixtures import make_tiny_world
from training.config import load_config
from training.run import reevaluate_pipeline, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lightgcn_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lgcn")
    # no two items with the same users: twins get embeddings equal to float32 rounding, and their order
    # then depends on the BLAS kernel (it differed between machines); here scores differ by >= 7e-5
    train_lines = ["0 0 1 2 3", "1 1 4 5", "2 2 4 6", "3 5 6 7 8", "4 7 9 11", "5 0 8 9 10"]
    test_lines = ["0 4", "1 6", "2 5", "3 9", "4 10", "5 1"]
    (d / "train.txt").write_text("\n".join(train_lines) + "\n")
    (d / "test.txt").write_text("\n".join(test_lines) + "\n")
    return d


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world"), 5)


def test_pipeline_without_blending_reproduces_the_model_ranking(lightgcn_split: Path, tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "configs/train/gowalla.yaml",
        [f"data.path={lightgcn_split}", "model.name=als", "model.params={factors: 4, iterations: 5}"],
    )
    run = train(cfg, tmp_path / "runs", quiet=True).run_dir
    ranking = tmp_path / "ranking"
    ranking.mkdir()
    default = (REPO / "configs/ranking/default.yaml").read_text()
    (ranking / "default.yaml").write_text(default)
    # the same variant with only the model's item score: served lists must equal full ranking
    import yaml

    raw = yaml.safe_load(default)
    raw["name"] = "pure"
    raw["weights"] = {key: (1.0 if key == "item_score" else 0.0) for key in raw["weights"]}
    (ranking / "pure.yaml").write_text(yaml.safe_dump(raw))
    served, full = reevaluate_pipeline(run, "pure", ranking, quiet=True)
    for key in ("recall@20", "ndcg@20", "hit@20"):
        assert served[key] == pytest.approx(full[key], abs=1e-9), key
    with pytest.raises(ValueError, match="unknown ranking variant"):
        reevaluate_pipeline(run, "nope", ranking, quiet=True)


def test_cli_pipeline_on_a_world_costs_at_most_five_percent(tiny_world: Path, tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs/train/world_als.yaml", [f"data.path={tiny_world}"])
    run = train(cfg, tmp_path / "runs", quiet=True).run_dir
    _register()
    result = CliRunner().invoke(
        app, ["eval", str(run), "--pipeline", "--json", "--ranking-dir", str(REPO / "configs/ranking")]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["model"]["recall@20"] > 0
    assert body["pipeline"]["recall@20"] >= 0.95 * body["model"]["recall@20"]


def test_eval_max_users_samples_a_seeded_subset(lightgcn_split: Path, tmp_path: Path) -> None:
    base = [f"data.path={lightgcn_split}", "model.name=popularity", "model.params={}"]
    full = train(load_config(REPO / "configs/train/gowalla.yaml", base), tmp_path / "a", quiet=True)
    assert full.metrics["eval_users"] == 6
    capped = load_config(REPO / "configs/train/gowalla.yaml", [*base, "eval.max_users=3"])
    one = train(capped, tmp_path / "b", quiet=True).metrics
    two = train(capped, tmp_path / "c", quiet=True).metrics
    assert one["eval_users"] == 3
    assert one["recall@20"] == two["recall@20"]  # same seed, same sample


def write_service_log(log_dir: Path, events: list[Any], workers: int) -> None:
    """``events`` as the service logs them: one plain log (``workers=0``, a single process) or
    ``worker-<i>`` sub-logs, requests landing on the workers in turn (``serve --workers N``)."""
    from features.eventlog import EventLog, claim_worker_log

    logs = [EventLog(log_dir)] if workers == 0 else [claim_worker_log(log_dir)[1] for _ in range(workers)]
    for i, ev in enumerate(events):
        logs[i % len(logs)].append_batch([ev])
    for log in logs:
        log.close()


@pytest.mark.parametrize("workers", [0, 2], ids=["plain-log", "worker-logs"])
def test_training_reads_the_service_event_log(tiny_world: Path, tmp_path: Path, workers: int) -> None:
    import shutil

    import pyarrow.parquet as pq

    from features.base import StoreEvent
    from recsys.io.errors import DataError
    from training.data import data_fingerprint

    events = pq.read_table(tiny_world / "events.parquet")
    last_ts = int(events.column("ts").to_numpy().max())
    log_dir = tmp_path / "eventlog"
    logged = [
        StoreEvent(ts=float(last_ts + 60 * (i + 1)), user_id=i % 50, item_id=i % 40, action="buy", value=9.5)
        for i in range(300)
    ]
    write_service_log(log_dir, logged, workers)
    assert (log_dir / "worker-1").is_dir() == (workers == 2)
    base = [f"data.path={tiny_world}", "model.name=popularity", "model.params={}"]
    cfg = load_config(REPO / "configs/train/world_popularity.yaml", [*base, f"data.events_log={log_dir}"])
    result = train(cfg, tmp_path / "runs", quiet=True)
    stats = json.loads((result.run_dir / "metrics.json").read_text())
    assert stats["data_n_train_events"] + stats["data_n_test_events"] == len(events) + len(logged)
    assert stats["data_n_test_events"] >= len(logged)  # the logged buys are the newest events
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == data_fingerprint(tiny_world, str(log_dir))
    bad = load_config(
        REPO / "configs/train/world_popularity.yaml", [*base, f"data.events_log={tmp_path / 'missing'}"]
    )
    with pytest.raises(DataError, match="not a directory"):
        train(bad, tmp_path / "runs2", quiet=True)
    # a directory with segments of its own AND worker logs is refused in one line, not half read
    one_log = log_dir / "worker-0" if workers else log_dir
    shutil.copytree(one_log, tmp_path / "mixed")
    shutil.copytree(one_log, tmp_path / "mixed" / "worker-0")
    mixed = load_config(
        REPO / "configs/train/world_popularity.yaml", [*base, f"data.events_log={tmp_path / 'mixed'}"]
    )
    with pytest.raises(DataError, match="both its own segments"):
        train(mixed, tmp_path / "runs3", quiet=True)


def test_data_fingerprint_covers_every_worker_log(tmp_path: Path) -> None:
    import shutil

    from features.base import StoreEvent
    from features.eventlog import EventLog
    from training.data import data_fingerprint

    data = tmp_path / "events.csv"
    data.write_text("ts,user_id,item_id,action\n1,1,1,click\n")
    log_dir = tmp_path / "eventlog"
    ev = StoreEvent(ts=1_700_000_000.0, user_id=1, item_id=2, action="click")
    write_service_log(log_dir, [ev, ev], workers=2)
    before = data_fingerprint(data, str(log_dir))
    assert before != data_fingerprint(data, None)
    with EventLog(log_dir / "worker-1", fsync=False) as log:  # the second worker logs one more event
        log.append_batch([ev])
    after = data_fingerprint(data, str(log_dir))
    assert after != before
    # the same segments under other worker names are other input
    moved = tmp_path / "moved"
    shutil.copytree(log_dir / "worker-1", moved / "worker-0")
    shutil.copytree(log_dir / "worker-0", moved / "worker-1")
    assert data_fingerprint(data, str(moved)) != after

"""Training on an event export (``data.events_path``): the service's events of every replica and
worker, counted like the log's, beside or instead of the world's own events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.base import StoreEvent
from features.event_export import export_events, export_files
from features.eventlog import EventLog, claim_worker_log
from recsys.io.errors import DataError
from tests.world_fixtures import make_tiny_world
from training.config import ConfigError, load_config
from training.data import data_fingerprint
from training.run import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/train/world_popularity.yaml"
UNKNOWN_ITEM = 987_654_321


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world"), 5)


def service_events(world: Path, n: int) -> list[StoreEvent]:
    """``n`` buys after the world's last event, by world users and one user the world never saw."""
    last_ts = int(pq.read_table(world / "events.parquet").column("ts").to_numpy().max())
    items = pq.read_table(world / "items.parquet").column("item_id").to_pylist()
    return [
        StoreEvent(
            ts=float(last_ts + 60 * (i + 1)),
            user_id=i % 50 if i % 10 else 77_777,
            item_id=items[i % 40],
            action="buy",
            value=9.5,
        )
        for i in range(n)
    ]


def export_from_two_replicas(world: Path, tmp_path: Path, n: int) -> Path:
    """``n`` events spread over a single-process replica and a two-worker replica, plus one on an
    item missing from the catalogue, exported together."""
    events = service_events(world, n)
    logs = [EventLog(tmp_path / "logs" / "host-a", replica="host-a")]
    logs += [claim_worker_log(tmp_path / "logs" / "host-b", replica="host-b")[1] for _ in range(2)]
    for i, ev in enumerate(events):
        logs[i % 3].append_batch([ev])
    logs[0].append_batch([StoreEvent(ts=events[-1].ts, user_id=1, item_id=UNKNOWN_ITEM, action="click")])
    for log in logs:
        log.close()
    out = tmp_path / "export"
    export_events(tmp_path / "logs", out, fallback_replica="unused")
    return out


def test_training_reads_an_event_export_and_counts_its_rows(tiny_world: Path, tmp_path: Path) -> None:
    world_events = pq.read_metadata(tiny_world / "events.parquet").num_rows
    export = export_from_two_replicas(tiny_world, tmp_path, 300)
    base = [f"data.path={tiny_world}", "model.name=popularity", "model.params={}"]
    cfg = load_config(CONFIG, [*base, f"data.events_path={export}"])
    result = train(cfg, tmp_path / "runs", quiet=True)
    stats = json.loads((result.run_dir / "metrics.json").read_text())
    assert stats["data_n_train_events"] + stats["data_n_test_events"] == world_events + 300
    assert stats["data_n_test_events"] >= 300 * 0.5  # the exported buys are the newest events
    assert stats["data_log_events_read"] == 301 and stats["data_log_events_kept"] == 300
    assert stats["data_log_skipped_unknown_item"] == 1 and stats["data_log_new_users"] == 1
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == data_fingerprint(tiny_world, None, str(export))
    assert manifest["data_fingerprint"] != data_fingerprint(tiny_world)


def test_repeated_rows_of_an_export_are_counted_and_skipped(tiny_world: Path, tmp_path: Path) -> None:
    export = export_from_two_replicas(tiny_world, tmp_path, 30)
    first = export_files(export)[0]
    shutil.copy(first, first.with_name("copied-by-hand.parquet"))
    repeats = pq.read_metadata(first).num_rows
    base = [f"data.path={tiny_world}", "model.name=popularity", "model.params={}"]
    result = train(load_config(CONFIG, [*base, f"data.events_path={export}"]), tmp_path / "runs", quiet=True)
    stats = json.loads((result.run_dir / "metrics.json").read_text())
    assert stats["data_log_events_read"] == 31 + repeats and stats["data_log_events_kept"] == 30


def test_a_world_without_events_trains_on_the_export_alone(tiny_world: Path, tmp_path: Path) -> None:
    world = tmp_path / "catalogue-only"
    shutil.copytree(tiny_world, world)
    events = pq.read_table(world / "events.parquet")
    pq.write_table(events.slice(0, 0), world / "events.parquet")
    shutil.rmtree(world / "split")
    export = export_from_two_replicas(tiny_world, tmp_path, 200)
    base = [f"data.path={world}", "model.name=popularity", "model.params={}"]
    result = train(load_config(CONFIG, [*base, f"data.events_path={export}"]), tmp_path / "runs", quiet=True)
    stats = json.loads((result.run_dir / "metrics.json").read_text())
    assert stats["data_n_train_events"] + stats["data_n_test_events"] == 200


def test_events_path_config_errors_name_the_key(tiny_world: Path, tmp_path: Path) -> None:
    base = [f"data.path={tiny_world}", "model.name=popularity", "model.params={}"]
    with pytest.raises(ConfigError, match=r"events_log and data\.events_path together"):
        load_config(CONFIG, [*base, "data.events_log=a", "data.events_path=b"])
    with pytest.raises(ConfigError, match=r"data\.events_path needs data\.format 'world'"):
        load_config(REPO / "configs/train/gowalla.yaml", [f"data.events_path={tmp_path}"])
    missing = load_config(CONFIG, [*base, f"data.events_path={tmp_path / 'missing'}"])
    with pytest.raises(DataError, match=r"data\.events_path is not a directory"):
        train(missing, tmp_path / "runs", quiet=True)
    (tmp_path / "bad" / "date=2024-01-01").mkdir(parents=True)
    (tmp_path / "bad" / "date=2024-01-01" / "x.parquet").write_bytes(b"not parquet")
    bad = load_config(CONFIG, [*base, f"data.events_path={tmp_path / 'bad'}"])
    with pytest.raises(DataError, match=r"data\.events_path: .*x\.parquet: not a readable Parquet file"):
        train(bad, tmp_path / "runs", quiet=True)

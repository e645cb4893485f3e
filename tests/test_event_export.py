"""`kolfeed events export`: every logged event once in date-partitioned Parquet, across replicas,
workers, repeated runs and a SIGKILL in the middle of a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.base import StoreEvent
from features.event_export import (
    EXPORT_SCHEMA,
    STATE_FILE,
    ExportError,
    export_events,
    export_files,
    read_export,
    read_state,
)
from features.eventlog import (
    REPLICA_FILE,
    EventLog,
    EventLogError,
    claim_worker_log,
    host_replica,
    read_replica,
)
from kolfeed.cli import _register
from kolfeed.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400
T0 = 1_700_000_000 - 1_700_000_000 % DAY  # 2023-11-14 00:00:00 UTC


def ev(k: int, ts: float | None = None) -> StoreEvent:
    return StoreEvent(
        ts=T0 + k * 3_600.5 if ts is None else ts,
        user_id=k % 5,
        item_id=1_000 + k,
        action=("click", "buy", "share")[k % 3],
        kol_id=7 if k % 2 else None,
        post_id=k if k % 4 == 0 else None,
        to_user_id=(k + 1) % 5 if k % 3 == 2 else None,
        request_id=f"r{k}" if k % 5 == 0 else None,
        value=9.5 if k % 3 == 1 else 0.0,
    )


def fill(log: EventLog, start: int, n: int) -> None:
    log.append_batch([ev(k) for k in range(start, start + n)])


def exported(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet", partitioning="hive").to_table()


def identities(table: pa.Table) -> list[tuple[str, int, int]]:
    rows = zip(
        table.column("replica").to_pylist(),
        table.column("worker").to_pylist(),
        table.column("seq").to_pylist(),
        strict=True,
    )
    return sorted(rows)


def test_export_writes_the_contract_columns_partitioned_by_utc_day(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log", replica="host-a") as log:
        fill(log, 0, 60)  # 60 events an hour apart: three UTC days
    result = export_events(tmp_path / "log", tmp_path / "out", fallback_replica="unused")
    assert (result.events, result.logs) == (60, 1)
    assert sorted(p.parent.name for p in export_files(tmp_path / "out")) == [
        "date=2023-11-14",
        "date=2023-11-15",
        "date=2023-11-16",
    ]
    for path in export_files(tmp_path / "out"):
        assert pq.read_schema(path).remove_metadata().equals(EXPORT_SCHEMA), path
    table = exported(tmp_path / "out")
    assert identities(table) == [("host-a", 0, s) for s in range(1, 61)]
    rows = {r["seq"]: r for r in table.to_pylist()}
    for k in range(60):
        row, e = rows[k + 1], ev(k)
        assert row["ts"] == int(e.ts) and row["date"] == f"2023-11-{14 + int(e.ts - T0) // DAY}"
        assert (row["user_id"], row["item_id"], row["action"]) == (e.user_id, e.item_id, e.action)
        assert (row["kol_id"], row["post_id"], row["to_user_id"]) == (e.kol_id, e.post_id, e.to_user_id)
        assert (row["request_id"], row["value"]) == (e.request_id, e.value)


def test_export_append_export_again_writes_each_event_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log", replica="a")
    fill(log, 0, 30)
    first = export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    again = export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")  # nothing new
    fill(log, 30, 25)  # the service keeps appending (the writer holds the log open)
    third = export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    log.close()
    assert (first.events, again.events, again.files, third.events) == (30, 0, 0, 25)
    assert identities(exported(tmp_path / "out")) == [("a", 0, s) for s in range(1, 56)]
    assert read_state(tmp_path / "out") == {"a/w0": 55}


KILLER = """
import os, signal, sys
from features.event_export import export_events
n = 0
def die_after_two(path):
    global n
    n += 1
    if n == 2:
        os.kill(os.getpid(), signal.SIGKILL)
chunk = int(sys.argv[3])
export_events(sys.argv[1], sys.argv[2], fallback_replica="x", chunk_rows=chunk, on_file=die_after_two)
"""


@pytest.mark.parametrize("chunk_rows", [7, 1_000])
def test_export_killed_midway_then_rerun_has_each_event_exactly_once(tmp_path: Path, chunk_rows: int) -> None:
    log = EventLog(tmp_path / "log", replica="a")
    fill(log, 0, 20)
    export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    fill(log, 20, 40)  # spans several days: a chunk writes one file per day
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(tmp_path / "log"), str(tmp_path / "out"), str(chunk_rows)]
    proc = subprocess.run([sys.executable, "-c", KILLER, *args], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert read_state(tmp_path / "out")["a/w0"] < 60, "the kill came after the last commit"
    rerun = export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    log.close()
    if chunk_rows == 1_000:  # one chunk: its first two files were visible but not committed
        assert rerun.stale_files_removed == 2
    assert identities(exported(tmp_path / "out")) == [("a", 0, s) for s in range(1, 61)]
    assert not [p for p in (tmp_path / "out").rglob(".part-*")], "temp files left behind"


def test_logs_of_several_replicas_and_workers_export_together(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    with EventLog(root / "host-a", replica="host-a") as a:
        fill(a, 0, 5)
    _, w0 = claim_worker_log(root / "host-b", replica="host-b")
    _, w1 = claim_worker_log(root / "host-b", replica="host-b")
    fill(w0, 100, 3)
    fill(w1, 200, 4)
    result = export_events(root, tmp_path / "out", fallback_replica="x")
    w0.close()
    w1.close()
    assert result.per_log == {"host-a/w0": 5, "host-b/w0": 3, "host-b/w1": 4}
    table = exported(tmp_path / "out")
    assert identities(table) == sorted(
        [("host-a", 0, s) for s in range(1, 6)]
        + [("host-b", 0, s) for s in range(1, 4)]
        + [("host-b", 1, s) for s in range(1, 5)]
    )
    items = dict(
        zip(
            zip(
                table.column("replica").to_pylist(),
                table.column("worker").to_pylist(),
                table.column("seq").to_pylist(),
                strict=True,
            ),
            table.column("item_id").to_pylist(),
            strict=True,
        )
    )
    assert items[("host-b", 1, 1)] == 1_200 and items[("host-a", 0, 5)] == 1_004


def test_a_log_keeps_the_replica_id_it_was_created_with(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log") as log:
        assert log.replica == host_replica()
    assert read_replica(tmp_path / "log") == host_replica()
    with EventLog(tmp_path / "log") as log:  # reopened (e.g. a container with a new hostname)
        assert log.replica == host_replica()
    with pytest.raises(EventLogError, match="replica"):
        EventLog(tmp_path / "log", replica="someone-else")
    with pytest.raises(EventLogError, match="letters, digits"):
        EventLog(tmp_path / "other", replica="bad/id")


def test_two_logs_under_one_identity_are_refused(tmp_path: Path) -> None:
    for name in ("old-1", "old-2"):
        with EventLog(tmp_path / "root" / name) as log:
            fill(log, 0, 2)
        (tmp_path / "root" / name / REPLICA_FILE).unlink()  # logs from before replica ids
    with pytest.raises(ExportError, match="collide"):
        export_events(tmp_path / "root", tmp_path / "out", fallback_replica="same")


def test_a_log_that_restarted_from_seq_1_is_refused_not_skipped(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log", replica="a") as log:
        fill(log, 0, 10)
    export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    for seg in (tmp_path / "log").glob("events-*.log"):
        seg.unlink()
    with EventLog(tmp_path / "log", replica="a") as log:
        fill(log, 0, 3)
    with pytest.raises(ExportError, match="ends at seq 3"):
        export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")


def test_read_export_counts_rows_and_drops_repeats(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log", replica="a") as log:
        fill(log, 0, 30)
    export_events(tmp_path / "log", tmp_path / "out", fallback_replica="x")
    first = export_files(tmp_path / "out")[0]
    copy = first.with_name(first.name.replace("part-", "copy-"))
    copy.write_bytes(first.read_bytes())  # a file copied by hand: the same events again
    table, report = read_export(tmp_path / "out")
    n_copy = pq.read_metadata(first).num_rows
    assert report.total_rows == 30 + n_copy and report.kept_rows == 30 == len(table)
    assert report.skipped == {"repeated (replica, worker, seq)": n_copy}
    assert table.column("ts").to_pylist() == sorted(int(ev(k).ts) for k in range(30))
    assert table.column_names == [
        "ts",
        "user_id",
        "item_id",
        "action",
        "post_id",
        "kol_id",
        "to_user_id",
        "request_id",
        "value",
    ]


def test_read_export_names_the_file_and_the_missing_column(tmp_path: Path) -> None:
    (tmp_path / "out" / "date=2023-11-14").mkdir(parents=True)
    bad = tmp_path / "out" / "date=2023-11-14" / "x.parquet"
    pq.write_table(pa.table({"ts": [1], "user_id": [1]}), bad)
    with pytest.raises(ExportError, match=r"x\.parquet: column 'item_id' missing"):
        read_export(tmp_path / "out")


def test_cli_exports_and_reports_per_log(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log", replica="cli-host") as log:
        fill(log, 0, 4)
    _register()
    r = CliRunner().invoke(
        cli_app, ["events", "export", "--log", str(tmp_path / "log"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output
    assert "exported 4 events from 1 logs" in r.output and "cli-host/w0: +4 (to seq 4)" in r.output
    assert (tmp_path / "o" / STATE_FILE).is_file()
    r = CliRunner().invoke(
        cli_app, ["events", "export", "--log", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "does not exist" in r.output


def test_the_written_contract_matches_the_export_schema() -> None:
    text = (ROOT / "docs" / "DATA.md").read_text().split("## The service's event export", 1)[1]
    rows = [line.split("|")[1:5] for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    documented = [(name.strip(), typ.strip(), null.strip()) for name, typ, null, _ in rows[1:]]
    actual = [
        (f.name, str(f.type).replace("double", "float64"), "yes" if f.nullable else "no")
        for f in EXPORT_SCHEMA
    ]
    assert documented == actual

"""Export of the durable event logs of every replica and worker to date-partitioned Parquet.

Why: the logs are per process and per host, in a framed format only this package reads; training
(locally or on Spark) wants one columnar dataset. ``kolfeed events export --log LOG --out DIR`` writes
Hive-style ``DIR/date=YYYY-MM-DD/part-<replica>-w<worker>-<first seq>-<last seq>.parquet`` (date: UTC
day of ``ts``) with exactly the columns of :data:`EXPORT_SCHEMA`; ``(replica, worker, seq)`` is unique.

Which logs: ``LOG`` may be one log, the parent of a process's ``worker-<i>`` logs, or a directory of
such directories (one per replica host, e.g. on shared storage). Each log names its replica in its
``REPLICA`` file (:func:`features.eventlog.read_replica`); older logs without one take ``--replica``.

Exactly once, resumable: ``DIR/_export_state.json`` holds, per ``(replica, worker)``, the last seq
exported; it is the commit point, replaced atomically (temp file, fsync, rename, directory fsync)
after each chunk's files are durable. A file is written under a hidden temp name (``.part-…``, which
Parquet readers and Spark skip), fsynced, then renamed. A run killed midway leaves files beyond the
committed seq: the next run deletes them first (before writing anything), then exports from the
committed seq, so no event ever appears in two visible files after a completed run, and a reader in
between sees each event at most once. Only what is on disk is exported: the tail segment is
fdatasynced by the exporter before it is read, so an exported event cannot vanish in a power loss.
One exporter per ``DIR`` at a time (``_export.lock``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.base import StoreEvent
from features.eventlog import (
    LOCK_FILE,
    REPLICA_FILE,
    EventLogError,
    LogReader,
    check_replica,
    fsync_dir,
    list_segments,
    log_dirs,
    read_replica,
    worker_dirs,
)
from recsys.schema import ACTION_NAMES, EVENTS

log = logging.getLogger(__name__)

EXPORT_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("post_id", pa.int64()),
        pa.field("kol_id", pa.int64()),
        pa.field("to_user_id", pa.int64()),
        pa.field("request_id", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("replica", pa.string(), nullable=False),
        pa.field("worker", pa.int32(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
)
"""The contract shared with the Spark engine: these columns, in this order, these types."""
STATE_FILE = "_export_state.json"
LOCK_NAME = "_export.lock"
DEFAULT_CHUNK_ROWS = 200_000
PART_RE = re.compile(r"^part-(?P<replica>.+)-w(?P<worker>\d+)-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$")
DATE_DIR_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
SECONDS_PER_DAY = 86_400


class ExportError(EventLogError):
    """The logs, the export directory or its state cannot be exported consistently."""


@dataclass(frozen=True)
class LogSource:
    """One log to export: its directory and the identity of its events."""

    replica: str
    worker: int
    directory: Path

    @property
    def key(self) -> str:
        return f"{self.replica}/w{self.worker}"


@dataclass
class ExportResult:
    logs: int = 0
    events: int = 0
    files: int = 0
    stale_files_removed: int = 0
    dates: set[str] = field(default_factory=set)
    per_log: dict[str, int] = field(default_factory=dict)
    """Events exported in this run per ``replica/w<worker>``."""
    positions: dict[str, int] = field(default_factory=dict)
    """Last exported seq per ``replica/w<worker>`` after this run."""


# -- finding the logs ------------------------------------------------------------------------------
def _is_log_root(directory: Path) -> bool:
    """A plain log or the parent of worker logs (as opposed to a directory of replicas' logs)."""
    return bool(
        worker_dirs(directory)
        or list_segments(directory)
        or (directory / REPLICA_FILE).exists()
        or (directory / LOCK_FILE).exists()
    )


def find_logs(root: str | Path, fallback_replica: str) -> list[LogSource]:
    """Every log under ``root``: itself (a plain log or worker logs), else each subdirectory that is
    one (a replica's log on shared storage). ``fallback_replica`` names logs that recorded none."""
    root = Path(root)
    if not root.is_dir():
        raise ExportError(f"{root}: event log directory does not exist")
    check_replica(fallback_replica, "--replica")
    if _is_log_root(root):
        roots = [root]
    else:
        roots = sorted(
            d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _is_log_root(d)
        )
        if not roots:
            raise ExportError(
                f"{root}: holds no event log (no segments, worker-<i> logs or replica directories)"
            )
    sources: list[LogSource] = []
    for base in roots:
        base_replica = read_replica(base)
        for d in log_dirs(base):
            worker = 0 if d == base else int(d.name.split("-", 1)[1])
            replica = read_replica(d) or base_replica
            if replica is None:
                log.warning("%s: no recorded replica id; exporting it as replica %r", d, fallback_replica)
                replica = fallback_replica
            sources.append(LogSource(replica, worker, d))
    seen: dict[str, Path] = {}
    for src in sources:
        if src.key in seen:
            raise ExportError(
                f"{seen[src.key]} and {src.directory}: both are worker {src.worker} of replica "
                f"{src.replica!r}; "
                "their sequence numbers would collide (give older logs distinct ids with --replica, "
                "one export per replica)"
            )
        seen[src.key] = src.directory
    return sources


# -- state -----------------------------------------------------------------------------------------
def read_state(out: Path) -> dict[str, int]:
    """Last exported seq per ``replica/w<worker>`` (empty for a new export directory)."""
    path = out / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable export state ({exc})") from None
    try:
        positions = {f"{e['replica']}/w{int(e['worker'])}": int(e["seq"]) for e in raw["logs"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path}: malformed export state (missing or bad {exc})") from None
    return positions


def write_state(out: Path, positions: dict[str, int], sources: dict[str, LogSource]) -> None:
    """Atomically replace the state: readers and a crash see the old or the new one, never half."""
    entries = []
    for key, seq in sorted(positions.items()):
        replica, worker = key.rsplit("/w", 1)
        src = sources.get(key)
        entries.append(
            {
                "replica": replica,
                "worker": int(worker),
                "seq": seq,
                "log": str(src.directory) if src is not None else None,
            }
        )
    data = json.dumps({"format": 1, "updated": round(time.time(), 3), "logs": entries}, indent=1).encode()
    tmp = out / (STATE_FILE + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / STATE_FILE)
    fsync_dir(out)


# -- files -----------------------------------------------------------------------------------------
def part_name(src: LogSource, first_seq: int, last_seq: int) -> str:
    return f"part-{src.replica}-w{src.worker}-{first_seq:020d}-{last_seq:020d}.parquet"


def iter_part_files(out: Path) -> Iterator[tuple[Path, re.Match[str]]]:
    """Every exported file (``date=*/part-*.parquet``) with its parsed name."""
    for date_dir in sorted(out.iterdir()):
        if not (date_dir.is_dir() and DATE_DIR_RE.match(date_dir.name)):
            continue
        for path in sorted(date_dir.iterdir()):
            m = PART_RE.match(path.name)
            if m:
                yield path, m


def remove_uncommitted(out: Path, positions: dict[str, int]) -> int:
    """Delete what an interrupted run left: files holding seqs past the committed position of their
    log, and temp files. Returns how many visible files were removed."""
    removed = 0
    touched: set[Path] = set()
    for path, m in list(iter_part_files(out)):
        key = f"{m.group('replica')}/w{int(m.group('worker'))}"
        if int(m.group("last")) > positions.get(key, 0):
            log.warning(
                "%s: written by an interrupted export (past seq %d); removing", path, positions.get(key, 0)
            )
            path.unlink()
            touched.add(path.parent)
            removed += 1
    for date_dir in out.iterdir():
        if date_dir.is_dir() and DATE_DIR_RE.match(date_dir.name):
            for tmp in date_dir.glob(".part-*"):
                tmp.unlink()
                touched.add(date_dir)
    for d in touched:
        fsync_dir(d)
    return removed


def _sync_tail(directory: Path) -> None:
    """fdatasync the last segment (from this process): what is read next is on disk, not only in
    the page cache of a writer that has not reached its fsync yet."""
    segments = list_segments(directory)
    if segments:
        fd = os.open(segments[-1].path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)


def events_table(src: LogSource, records: list[tuple[int, StoreEvent]]) -> pa.Table:
    """Log records of one log as an :data:`EXPORT_SCHEMA` table (ts floored to whole seconds)."""
    n = len(records)
    cols: dict[str, Any] = {
        "ts": [int(ev.ts // 1) for _, ev in records],
        "user_id": [ev.user_id for _, ev in records],
        "item_id": [ev.item_id for _, ev in records],
        "action": [ev.action for _, ev in records],
        "post_id": [ev.post_id for _, ev in records],
        "kol_id": [ev.kol_id for _, ev in records],
        "to_user_id": [ev.to_user_id for _, ev in records],
        "request_id": [ev.request_id for _, ev in records],
        "value": [ev.value for _, ev in records],
        "replica": [src.replica] * n,
        "worker": [src.worker] * n,
        "seq": [seq for seq, _ in records],
    }
    return pa.Table.from_arrays(
        [pa.array(cols[f.name], type=f.type) for f in EXPORT_SCHEMA], schema=EXPORT_SCHEMA
    )


def utc_dates(ts: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` (UTC) of unix seconds."""
    days = np.floor_divide(ts.astype(np.int64), SECONDS_PER_DAY).astype("datetime64[D]")
    return np.datetime_as_string(days, unit="D")


def _write_part(out: Path, date: str, name: str, table: pa.Table) -> Path:
    date_dir = out / f"date={date}"
    new_dir = not date_dir.exists()
    date_dir.mkdir(exist_ok=True)
    if new_dir:
        fsync_dir(out)
    tmp = date_dir / ("." + name + ".tmp")
    pq.write_table(table, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    final = date_dir / name
    os.replace(tmp, final)
    fsync_dir(date_dir)
    return final


# -- export ----------------------------------------------------------------------------------------
def export_events(
    log_root: str | Path,
    out: str | Path,
    *,
    fallback_replica: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_file: Callable[[Path], object] | None = None,
    on_events: Callable[[int], object] | None = None,
) -> ExportResult:
    """Export what every log under ``log_root`` holds beyond the last export into ``out``.

    ``on_file(path)`` is called after each file is durable (tests kill the process there);
    ``on_events(n)`` after each chunk (progress bars)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    out = Path(out)
    sources = find_logs(log_root, fallback_replica)
    out.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"{out}: another export into this directory is running") from None
        return _export_locked(sources, out, chunk_rows, on_file, on_events)
    finally:
        os.close(lock_fd)


def _in_chunks(
    records: Iterable[tuple[int, StoreEvent, object]], size: int
) -> Iterator[list[tuple[int, StoreEvent]]]:
    """(seq, event) records in lists of ``size`` (the last one shorter, none when there are none)."""
    chunk: list[tuple[int, StoreEvent]] = []
    for seq, ev, _ in records:
        chunk.append((seq, ev))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _export_locked(
    sources: list[LogSource],
    out: Path,
    chunk_rows: int,
    on_file: Callable[[Path], object] | None,
    on_events: Callable[[int], object] | None,
) -> ExportResult:
    positions = read_state(out)
    by_key = {src.key: src for src in sources}
    result = ExportResult(logs=len(sources))
    result.stale_files_removed = remove_uncommitted(out, positions)
    for src in sources:
        committed = positions.get(src.key, 0)
        _sync_tail(src.directory)
        reader = LogReader(src.directory)
        end = reader.end_seq()
        if committed > end:
            raise ExportError(
                f"{src.directory}: log ends at seq {end}, but {out} already holds seqs up to {committed} of "
                f"replica {src.replica!r} worker {src.worker}: a different log under the same identity?"
            )
        exported = 0
        for records in _in_chunks(reader.records(committed + 1, end), chunk_rows):
            _export_chunk(src, records, out, result, on_file)
            positions[src.key] = records[-1][0]
            write_state(out, positions, by_key)
            exported += len(records)
            if on_events is not None:
                on_events(len(records))
        result.per_log[src.key] = exported
        result.events += exported
        result.positions[src.key] = positions.get(src.key, 0)
    if not (out / STATE_FILE).exists():
        write_state(out, positions, by_key)  # an empty export is a valid, resumable one
    return result


def _export_chunk(
    src: LogSource,
    records: list[tuple[int, StoreEvent]],
    out: Path,
    result: ExportResult,
    on_file: Callable[[Path], object] | None,
) -> None:
    table = events_table(src, records)
    dates = utc_dates(table.column("ts").to_numpy())
    for date in np.unique(dates):
        part = table.filter(pa.array(dates == date))
        seqs = part.column("seq")
        first, last = int(pc.min(seqs).as_py()), int(pc.max(seqs).as_py())
        path = _write_part(out, str(date), part_name(src, first, last), part)
        result.files += 1
        result.dates.add(str(date))
        if on_file is not None:
            on_file(path)


# -- reading (training) ----------------------------------------------------------------------------
@dataclass
class ExportReadReport:
    """Rows of an export read for training: counted like every other event input."""

    directory: str
    files: int = 0
    total_rows: int = 0
    kept_rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "files": self.files,
            "total_rows": self.total_rows,
            "kept_rows": self.kept_rows,
            "skipped_rows": sum(self.skipped.values()),
            "skipped": dict(self.skipped),
        }


def export_files(directory: str | Path) -> list[Path]:
    """The visible Parquet files of an export (``date=*/*.parquet``; hidden temp files skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise ExportError(f"{root}: event export directory does not exist")
    return sorted(
        p
        for d in root.iterdir()
        if d.is_dir() and d.name.startswith("date=")
        for p in d.iterdir()
        if p.suffix == ".parquet" and not p.name.startswith((".", "_"))
    )


def _read_file(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ExportError(f"{path}: not a readable Parquet file ({exc})") from None
    for f in EXPORT_SCHEMA:
        if f.name not in table.column_names:
            raise ExportError(
                f"{path}: column {f.name!r} missing (an event export has {', '.join(EXPORT_SCHEMA.names)})"
            )
        have = table.schema.field(f.name).type
        if have != f.type:
            try:
                table = table.set_column(
                    table.column_names.index(f.name), f.name, pc.cast(table.column(f.name), f.type)
                )
            except pa.ArrowInvalid:
                raise ExportError(f"{path}: column {f.name!r} is {have}, expected {f.type}") from None
    return table.select(EXPORT_SCHEMA.names)


def read_export(directory: str | Path) -> tuple[pa.Table, ExportReadReport]:
    """An export as one ``recsys.schema.EVENTS`` table ordered by ``ts`` (ties: replica, worker,
    seq), and the count of rows read, kept and skipped per reason (a missing ts/user/item, an
    unknown action, a repeated ``(replica, worker, seq)``)."""
    files = export_files(directory)
    report = ExportReadReport(str(directory), files=len(files))
    schema = EVENTS.arrow_schema()
    if not files:
        return schema.empty_table(), report
    table = pa.concat_tables([_read_file(p) for p in files])
    report.total_rows = len(table)
    keep = np.ones(len(table), dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        n = int((mask & keep).sum())
        if n:
            report.skipped[reason] = report.skipped.get(reason, 0) + n
        keep[mask] = False

    for name in ("ts", "user_id", "item_id", "action", "replica", "worker", "seq"):
        drop(np.asarray(table.column(name).is_null().to_numpy(zero_copy_only=False)), f"missing {name}")
    known = pc.fill_null(pc.is_in(table.column("action"), pa.array(ACTION_NAMES)), False)
    drop(~np.asarray(known.to_numpy(zero_copy_only=False)), "unknown action")
    table = table.filter(pa.array(keep))
    # a repeated (replica, worker, seq) is the same event twice (files copied by hand): keep one
    order = ["replica", "worker", "seq"]
    table = table.sort_by([(c, "ascending") for c in order])
    if len(table) > 1:
        same = np.ones(len(table) - 1, dtype=bool)
        for c in order:
            col = table.column(c).to_numpy(zero_copy_only=False)
            same &= col[1:] == col[:-1]
        if same.any():
            report.skipped["repeated (replica, worker, seq)"] = int(same.sum())
            table = table.filter(pa.array(np.concatenate([[True], ~same])))
    report.kept_rows = len(table)
    table = table.sort_by([("ts", "ascending"), *((c, "ascending") for c in order)])
    events = table.select(schema.names)
    return events.cast(schema), report

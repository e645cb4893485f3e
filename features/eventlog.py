"""The durable, append-only local event log: the source of truth the feature store is rebuilt from.

Why: the store (memory:// or Redis) is a cache. Every event the service acknowledges is first
appended here, so a Redis outage or a process crash loses nothing, ``kolfeed store rebuild``
can recreate the store, and training can read the log as its events table.

Layout: a directory of segment files ``events-<20-digit first seq>.log`` (plus ``LOCK`` held by the
one writer, ``REPLICA`` naming the replica (host) that writes it, recorded when the log is created,
and ``replay.pos`` owned by :mod:`features.replay`). A segment is a sequence of frames::

    u32 payload length | u32 CRC32 | u64 seq | payload (compact JSON object of all StoreEvent fields)

little-endian; the CRC (``zlib.crc32``) covers length, seq and payload. Sequence numbers start at 1,
increase by one per event with no gaps, and continue across segments.

Durability: :meth:`EventLog.append_batch` writes the frames of a whole batch with one ``write()``
and then ``fdatasync``s (``fsync=True``, the default). With ``fsync=False`` the data is still handed
to the OS before returning, which survives a SIGKILL of the process but NOT a power loss or kernel
crash. :meth:`EventLog.append_prepared` appends several batches with one write and one fsync
(group commit: the service's concurrent requests share it, see :mod:`features.group_commit`).
It is a blocking call guarded by a lock: from asyncio call it as
``await asyncio.to_thread(log.append_batch, events)``. If a write or fsync fails, the log truncates
the partial batch and refuses further appends (restart to recover), so no later batch can land
behind a torn one.

Recovery (on open): the last segment is scanned; a torn or corrupt trailing record (nothing valid
after it: the usual result of a crash mid-write) is truncated, counted in :attr:`EventLog.recovery`
and logged, and the sequence continues. Corruption with valid records after it is NOT skipped: it
raises :class:`CorruptLogError` naming the segment and byte offset, because silently skipping would
drop acknowledged events from the source of truth; an operator decides (restore or cut the file).

Reading: :class:`LogReader` (no lock; safe while a writer appends) iterates ``(seq, StoreEvent)``
across the segments of ONE log and converts it to the ``recsys.schema.EVENTS`` table
(:meth:`LogReader.to_arrow_table`, :meth:`LogReader.write_parquet`).

Several writer processes (``kolfeed serve --workers N``): a log has one writer, so each process
writes its own sub-log ``<dir>/worker-<i>/``, taking the lowest free slot with
:func:`claim_worker_log` (a restarted process re-claims a free slot and recovers its torn tail).
"The service's event log" is then the parent directory: :func:`log_dirs` resolves a directory to
the logs it holds (itself, or its ``worker-*`` sub-logs in index order) and :func:`load_event_log`
reads them all into one table ordered by ``ts``. Sequence numbers are per sub-log, so there is no
global ``seq`` across workers; ``LogReader`` and ``EventLog`` refuse a directory holding worker
sub-logs, so a single-log reader cannot silently read none of them. A directory with both its own
segments and worker sub-logs is an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from features.base import StoreEvent
from features.layout import validate_events
from recsys.schema import EVENTS

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQ")  # payload length, crc32, seq
_CRC_PREFIX = struct.Struct("<IQ")  # what the CRC covers besides the payload: length, seq
MAX_PAYLOAD = 1 << 20
"""Upper bound of one encoded event; a larger length field can only be corruption."""
DEFAULT_SEGMENT_BYTES = 64 << 20
SEGMENT_RE = re.compile(r"^events-(\d{20})\.log$")
LOCK_FILE = "LOCK"
REPLICA_FILE = "REPLICA"
REPLICA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
WORKER_PREFIX = "worker-"
WORKER_RE = re.compile(rf"^{WORKER_PREFIX}(\d+)$")
DEFAULT_MAX_WORKERS = 64
FIELDS: tuple[str, ...] = (
    "ts",
    "user_id",
    "item_id",
    "action",
    "kol_id",
    "post_id",
    "to_user_id",
    "category",
    "value",
    "request_id",
)
ARROW_CHUNK_ROWS = 65_536


class EventLogError(RuntimeError):
    """Base of every event-log error."""


class CorruptLogError(EventLogError):
    """A record that cannot be trusted with valid records after it (or a broken sequence)."""


class LogLockedError(EventLogError):
    """Another process holds the writer lock of this log directory."""


class LogWriteError(EventLogError):
    """An append failed; the log refuses further appends until it is reopened."""


def segment_name(first_seq: int) -> str:
    return f"events-{first_seq:020d}.log"


@dataclass(frozen=True)
class Segment:
    first_seq: int
    path: Path


def list_segments(directory: Path) -> list[Segment]:
    """Segments of ``directory`` ordered by first sequence number (other files are ignored)."""
    out = []
    for name in os.listdir(directory):
        m = SEGMENT_RE.match(name)
        if m:
            out.append(Segment(int(m.group(1)), directory / name))
    out.sort(key=lambda s: s.first_seq)
    return out


def worker_dirs(directory: str | Path) -> list[Path]:
    """The ``worker-<i>`` subdirectories of ``directory`` in index order (worker-10 after worker-9)."""
    directory = Path(directory)
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            m = WORKER_RE.match(entry.name)
            if m and entry.is_dir():
                found.append((int(m.group(1)), entry.name))
    found.sort()
    return [directory / name for _, name in found]


def _refuse_worker_parent(directory: Path, what: str) -> None:
    workers = worker_dirs(directory)
    if workers:
        raise EventLogError(
            f"{directory}: holds per-worker event logs ({', '.join(w.name for w in workers[:3])}"
            f"{', …' if len(workers) > 3 else ''}); {what}"
        )


def log_dirs(directory: str | Path) -> list[Path]:
    """The logs that make up the event log at ``directory``: ``[directory]`` for a plain log (one
    writer), else its ``worker-<i>`` sub-logs in index order.

    A plain log is a directory without ``worker-*`` subdirectories (possibly empty). A leftover
    ``LOCK`` or ``replay.pos`` beside worker sub-logs holds no events and is ignored; segments
    beside them are an error (two layouts mixed: which one is the log?).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EventLogError(f"{directory}: event log directory does not exist")
    workers = worker_dirs(directory)
    if not workers:
        return [directory]
    own = list_segments(directory)
    if own:
        raise EventLogError(
            f"{directory}: holds both its own segments ({own[0].path.name}, …) and per-worker event logs "
            f"({workers[0].name}, …); move the segments into a free worker-<i> directory or elsewhere"
        )
    return workers


# -- replica id ------------------------------------------------------------------------------------
def check_replica(name: str, what: str = "replica") -> str:
    """A replica id: 1-63 characters of letters, digits, ``.``, ``_``, ``-`` (a hostname fits)."""
    if not REPLICA_RE.fullmatch(name):
        raise EventLogError(
            f"{what} {name!r}: expected 1-63 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def host_replica() -> str:
    """This host's default replica id: its hostname, cut to the allowed characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].lstrip("._-")
    return name or "localhost"


def read_replica(directory: str | Path) -> str | None:
    """The replica id recorded in a log directory (None: an older log without one)."""
    path = Path(directory) / REPLICA_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return check_replica(text, f"{path}: recorded replica id")


def _record_replica(directory: Path, configured: str | None, fsync: bool) -> str:
    """Which replica writes ``directory``: recorded once, when the log is first opened.

    Why recorded: sequence numbers are per log, so ``(replica, worker, seq)`` names an event only if
    the log keeps its replica id for life, whatever the hostname of the process reopening it (a
    container gets a new one on every restart). An explicitly configured id (``--replica``,
    ``KOLFEED_REPLICA``) that differs from the recorded one is an error: this process was pointed at
    another replica's log."""
    recorded = read_replica(directory)
    if recorded is not None:
        if configured is not None and configured != recorded:
            raise EventLogError(
                f"{directory}: event log of replica {recorded!r}, but this process is replica "
                f"{configured!r}; give each replica its own log directory"
            )
        return recorded
    replica = check_replica(configured) if configured is not None else host_replica()
    tmp = directory / (REPLICA_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(replica + "\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, directory / REPLICA_FILE)
    if fsync:
        fsync_dir(directory)
    return replica


# -- encoding --------------------------------------------------------------------------------------
def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_event(ev: StoreEvent) -> bytes:
    """Compact JSON of every field, with numbers normalised (numpy scalars become plain numbers)."""
    obj = {
        "ts": float(ev.ts),
        "user_id": int(ev.user_id),
        "item_id": int(ev.item_id),
        "action": str(ev.action),
        "kol_id": _opt_int(ev.kol_id),
        "post_id": _opt_int(ev.post_id),
        "to_user_id": _opt_int(ev.to_user_id),
        "category": None if ev.category is None else str(ev.category),
        "value": float(ev.value),
        "request_id": None if ev.request_id is None else str(ev.request_id),
    }
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def decode_event(payload: bytes, where: str) -> StoreEvent:
    try:
        obj = json.loads(payload)
        if not isinstance(obj, dict):
            raise ValueError("payload is not a JSON object")
        unknown = set(obj) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        return StoreEvent(**obj)
    except (ValueError, TypeError) as exc:
        raise CorruptLogError(f"{where}: record does not decode to an event: {exc}") from None


def _crc(length: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(length, seq)))


def frame(seq: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), _crc(len(payload), seq, payload), seq) + payload


@dataclass(frozen=True)
class PreparedBatch:
    """A validated batch encoded for the log; only sequence numbers are missing (the writer assigns
    them). Preparing outside the writer lets one invalid request fail alone in a group commit."""

    payloads: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.payloads)


def prepare_batch(events: Iterable[StoreEvent]) -> PreparedBatch:
    """Validate and encode ``events``; raises :class:`features.errors.InvalidEventError` (unknown
    action, non-finite ts) or ValueError (an event too large) and then nothing may be written."""
    batch = list(events)
    validate_events(batch)
    payloads = tuple(encode_event(ev) for ev in batch)
    for i, p in enumerate(payloads):
        if len(p) > MAX_PAYLOAD:
            raise ValueError(f"event #{i} encodes to {len(p)} bytes (> {MAX_PAYLOAD})")
    return PreparedBatch(payloads)


# -- scanning --------------------------------------------------------------------------------------
class _BadFrame(Exception):
    def __init__(self, offset: int, reason: str, incomplete: bool) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.incomplete = incomplete
        """True when the frame runs past the end of the file (a write still in flight or torn)."""


def _frames(f: Any, offset: int, size: int, expected_seq: int) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (seq, frame offset, end offset, payload) from ``offset``; raise _BadFrame at a bad one.

    ``f`` must be positioned at ``offset``; ``size`` is the file size when the scan started.
    """
    while offset < size:
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise _BadFrame(offset, "incomplete header", incomplete=True)
        length, crc, seq = HEADER.unpack(head)
        if length == 0 or length > MAX_PAYLOAD:
            raise _BadFrame(offset, f"implausible record length {length}", incomplete=False)
        end = offset + HEADER.size + length
        if end > size:
            raise _BadFrame(offset, f"record of {length} bytes runs past the end of the file", True)
        payload = f.read(length)
        if len(payload) < length:
            raise _BadFrame(offset, "record truncated while reading", incomplete=True)
        if _crc(length, seq, payload) != crc:
            raise _BadFrame(offset, "CRC mismatch", incomplete=False)
        if seq != expected_seq:
            raise _BadFrame(offset, f"sequence number {seq}, expected {expected_seq}", incomplete=False)
        yield seq, offset, end, payload
        offset = end
        expected_seq = seq + 1


def _valid_frame_after(path: Path, bad_offset: int, min_seq: int) -> int | None:
    """Offset of a valid record (seq >= ``min_seq``) after ``bad_offset``, or None (a torn tail)."""
    with open(path, "rb") as f:
        f.seek(bad_offset)
        data = f.read()
    n = len(data)
    for i in range(1, n - HEADER.size + 1):
        length, crc, seq = HEADER.unpack_from(data, i)
        if length == 0 or length > MAX_PAYLOAD or i + HEADER.size + length > n or seq < min_seq:
            continue
        if _crc(length, seq, data[i + HEADER.size : i + HEADER.size + length]) == crc:
            return bad_offset + i
    return None


@dataclass(frozen=True)
class Cursor:
    """Where the record ``next_seq`` starts: lets a reader resume without rescanning a segment."""

    segment_first_seq: int
    offset: int
    next_seq: int


@dataclass(frozen=True)
class RecoveryReport:
    segment: str | None = None
    truncated_at: int | None = None
    dropped_bytes: int = 0
    torn_records: int = 0
    """Torn/corrupt trailing records cut off (a torn batch counts as one: its length is unknowable)."""


# -- reading ---------------------------------------------------------------------------------------
class LogReader:
    """Reads a log directory in sequence order. Takes no lock: safe while a writer appends.

    A bad record at the very end of the last segment with nothing valid after it is a write in
    flight (or a torn tail the writer will cut on its next open): reading stops there. Anywhere
    else a bad record raises :class:`CorruptLogError` naming segment and offset.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise EventLogError(f"{self.directory}: event log directory does not exist")
        _refuse_worker_parent(self.directory, "read it with load_event_log(), or each of log_dirs()")

    def records(
        self, start_seq: int = 1, end_seq: int | None = None, cursor: Cursor | None = None
    ) -> Iterator[tuple[int, StoreEvent, Cursor]]:
        """Yield (seq, event, cursor after it) for ``start_seq <= seq <= end_seq`` (end: all)."""
        start_seq = max(start_seq, 1)
        if end_seq is not None and end_seq < start_seq:
            return
        segments = list_segments(self.directory)
        if not segments:
            if end_seq is not None:
                raise CorruptLogError(f"{self.directory}: no segments, but records up to {end_seq} expected")
            return
        use_cursor = cursor is not None and cursor.next_seq == start_seq
        idx = 0
        for i, seg in enumerate(segments):
            if seg.first_seq <= start_seq:
                idx = i
        if use_cursor:
            assert cursor is not None
            found = [i for i, s in enumerate(segments) if s.first_seq == cursor.segment_first_seq]
            use_cursor = bool(found)
            if found:
                idx = found[0]
        last_seen = start_seq - 1
        for i in range(idx, len(segments)):
            seg = segments[i]
            is_last = i == len(segments) - 1
            if i > idx and seg.first_seq != last_seen + 1:
                raise CorruptLogError(
                    f"{seg.path}: starts at seq {seg.first_seq} but the previous segment ended at {last_seen}"
                )
            if use_cursor and i == idx:
                assert cursor is not None
                offset, expected = cursor.offset, cursor.next_seq
            else:
                offset, expected = 0, seg.first_seq
            with open(seg.path, "rb", buffering=1 << 20) as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                try:
                    for seq, _off, end, payload in _frames(f, offset, size, expected):
                        last_seen = seq
                        if seq < start_seq:
                            continue
                        if end_seq is not None and seq > end_seq:
                            return
                        ev = decode_event(payload, f"{seg.path} at byte {_off}")
                        yield seq, ev, Cursor(seg.first_seq, end, seq + 1)
                        if end_seq is not None and seq == end_seq:
                            return
                except _BadFrame as bad:
                    where = f"{seg.path}: corrupt record at byte {bad.offset} ({bad.reason})"
                    if not is_last or _valid_frame_after(seg.path, bad.offset, last_seen + 1) is not None:
                        raise CorruptLogError(where) from None
                    if end_seq is not None:
                        raise CorruptLogError(
                            f"{where}; the log ends at seq {last_seen} "
                            f"but records up to {end_seq} were expected"
                        ) from None
                    if not bad.incomplete:
                        log.warning("%s: treated as a torn tail, reading stops there", where)
                    return
        if end_seq is not None and last_seen < end_seq:
            raise CorruptLogError(
                f"{self.directory}: the log ends at seq {last_seen} but records up to {end_seq} were expected"
            )

    def iter_events(self, start_seq: int = 0, end_seq: int | None = None) -> Iterator[tuple[int, StoreEvent]]:
        """(seq, event) in order across segments, from ``start_seq`` (inclusive; seqs start at 1)."""
        for seq, ev, _ in self.records(start_seq, end_seq):
            yield seq, ev

    def read_batch(
        self, start_seq: int, limit: int, end_seq: int | None = None, cursor: Cursor | None = None
    ) -> tuple[list[tuple[int, StoreEvent]], Cursor | None]:
        """Up to ``limit`` records from ``start_seq``, and the cursor to resume after them."""
        out: list[tuple[int, StoreEvent]] = []
        after = cursor if cursor is not None and cursor.next_seq == start_seq else None
        if limit <= 0:
            return out, after
        for seq, ev, cur in self.records(start_seq, end_seq, cursor):
            out.append((seq, ev))
            after = cur
            if len(out) >= limit:
                break
        return out, after

    def end_seq(self) -> int:
        """The last readable sequence number (0 when empty); scans the last segment."""
        segments = list_segments(self.directory)
        if not segments:
            return 0
        last = segments[-1].first_seq - 1  # an empty last segment is named after the next seq
        for seq, _ev, _cur in self.records(segments[-1].first_seq):
            last = seq
        return last

    def count(self) -> int:
        return sum(1 for _ in self.records())

    # -- as a training table -----------------------------------------------------------------------
    def iter_record_batches(self, chunk_rows: int = ARROW_CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
        """The log as ``recsys.schema.EVENTS`` record batches (ts floored to int seconds)."""
        buf: list[StoreEvent] = []
        for _seq, ev, _ in self.records():
            buf.append(ev)
            if len(buf) >= chunk_rows:
                yield events_to_record_batch(buf)
                buf = []
        if buf:
            yield events_to_record_batch(buf)

    def to_arrow_table(self) -> pa.Table:
        schema = EVENTS.arrow_schema()
        return pa.Table.from_batches(list(self.iter_record_batches()), schema=schema)

    def write_parquet(self, path: str | Path) -> int:
        """Stream the log into one Parquet file of the EVENTS schema; returns the row count."""
        import pyarrow.parquet as pq

        rows = 0
        with pq.ParquetWriter(str(path), EVENTS.arrow_schema()) as writer:
            for batch in self.iter_record_batches():
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows


def events_to_record_batch(events: Sequence[StoreEvent]) -> pa.RecordBatch:
    """StoreEvents as one EVENTS-schema record batch (category is store-only and dropped)."""
    schema = EVENTS.arrow_schema()
    cols = {
        "ts": [int(e.ts // 1) for e in events],
        "user_id": [e.user_id for e in events],
        "item_id": [e.item_id for e in events],
        "action": [e.action for e in events],
        "post_id": [e.post_id for e in events],
        "kol_id": [e.kol_id for e in events],
        "to_user_id": [e.to_user_id for e in events],
        "request_id": [e.request_id for e in events],
        "value": [e.value for e in events],
    }
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def load_event_log(directory: str | Path) -> pa.Table:
    """The whole event log as one ``recsys.schema.EVENTS`` table (training's and reports' events
    source): every log of :func:`log_dirs`, ordered by ``ts``; ties keep log order (worker index,
    then sequence number)."""
    tables = [LogReader(d).to_arrow_table() for d in log_dirs(directory)]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    ts = table.column("ts").to_numpy()
    if len(ts) > 1 and bool((ts[1:] < ts[:-1]).any()):
        table = table.take(pc.sort_indices(table, sort_keys=[("ts", "ascending")]))  # a stable sort
    return table


# -- writing ---------------------------------------------------------------------------------------
def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (new or renamed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sync_data = getattr(os, "fdatasync", os.fsync)


class EventLog:
    """The single writer of a log directory (an exclusive ``flock`` on ``LOCK`` enforces one)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        replica: str | None = None,
    ) -> None:
        """``replica``: this process's replica id when configured explicitly; recorded in a new log
        (default: the hostname) and checked against the recorded one otherwise."""
        if segment_bytes <= HEADER.size:
            raise ValueError(f"segment_bytes must be > {HEADER.size}, got {segment_bytes}")
        self.directory = Path(directory)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self._file: Any = None
        self._size = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogLockedError(
                f"{self.directory}: event log is already open for writing by another process"
            ) from None
        try:
            # Checked with the lock held: claim_worker_log creates its sub-log first and then checks
            # this lock, so of two racing openers at least one sees the other.
            _refuse_worker_parent(self.directory, "open one of them with claim_worker_log()")
            self.replica = _record_replica(self.directory, replica, fsync)
            self.recovery = self._recover()
        except BaseException:
            self.close()
            raise
        self.reader = LogReader(self.directory)

    def __repr__(self) -> str:
        return f"EventLog({str(self.directory)!r}, last_seq={self.last_seq}, fsync={self.fsync})"

    # -- open / recover ----------------------------------------------------------------------------
    def _recover(self) -> RecoveryReport:
        segments = list_segments(self.directory)
        if not segments:
            self._next_seq = 1
            self._segment_first = 1
            return RecoveryReport()
        seg = segments[-1]
        next_seq = seg.first_seq
        report = RecoveryReport()
        with open(seg.path, "rb", buffering=1 << 20) as f:
            size = os.fstat(f.fileno()).st_size
            good_end = 0
            try:
                for seq, _off, end, _payload in _frames(f, 0, size, seg.first_seq):
                    next_seq = seq + 1
                    good_end = end
            except _BadFrame as bad:
                if _valid_frame_after(seg.path, bad.offset, next_seq) is not None:
                    raise CorruptLogError(
                        f"{seg.path}: corrupt record at byte {bad.offset} ({bad.reason}) with valid records "
                        "after it; refusing to drop acknowledged events (restore the segment or cut it)"
                    ) from None
                report = RecoveryReport(seg.path.name, good_end, size - good_end, 1)
        if report.torn_records:
            with open(seg.path, "r+b") as f:
                f.truncate(good_end)
                if self.fsync:
                    _sync_data(f.fileno())
            log.warning(
                "event log %s: truncated a torn/corrupt trailing record at byte %d (%d bytes dropped); "
                "continuing at seq %d",
                seg.path,
                good_end,
                size - good_end,
                next_seq,
            )
        self._next_seq = next_seq
        self._segment_first = seg.first_seq
        self._file = open(seg.path, "ab", buffering=0)  # noqa: SIM115 - kept open for appends
        self._size = good_end if report.torn_records else size
        return report

    # -- state -------------------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """Sequence number of the last acknowledged (fully written) event; 0 when empty."""
        return self._next_seq - 1

    def end_seq(self) -> int:
        return self.last_seq

    # -- append ------------------------------------------------------------------------------------
    def append_batch(self, events: Iterable[StoreEvent]) -> tuple[int, int]:
        """Append a batch durably; returns (first_seq, last_seq). Blocking: call via asyncio.to_thread.

        An empty batch writes nothing and returns (next_seq, next_seq - 1). Invalid events (unknown
        action, non-finite ts) raise :class:`features.errors.InvalidEventError` and nothing is written.
        """
        return self.append_prepared([prepare_batch(events)])[0]

    def append_prepared(self, batches: Sequence[PreparedBatch]) -> list[tuple[int, int]]:
        """Append several already validated batches with ONE write and ONE fsync (group commit);
        returns (first_seq, last_seq) of each, in order. Blocking: call via asyncio.to_thread.

        All or nothing: if the write or the fsync fails, none of the batches is acknowledged (the
        partial write is truncated and the log refuses further appends). An empty batch gets
        (next_seq, next_seq - 1) and writes nothing.
        """
        with self._lock:
            if self._failed is not None:
                raise LogWriteError(
                    f"{self.directory}: an earlier append failed ({self._failed}); reopen the log"
                )
            first = self._next_seq
            spans: list[tuple[int, int]] = []
            frames: list[bytes] = []
            seq = first
            for batch in batches:
                spans.append((seq, seq + len(batch.payloads) - 1))
                for payload in batch.payloads:
                    frames.append(frame(seq, payload))
                    seq += 1
            if seq == first:
                return spans
            data = b"".join(frames)
            if self._file is None or (self._size > 0 and self._size + len(data) > self.segment_bytes):
                self._rotate(first)
            start = self._size
            try:
                view = memoryview(data)
                while view:
                    written = self._file.write(view)
                    view = view[written:]
                if self.fsync:
                    _sync_data(self._file.fileno())
            except BaseException as exc:
                self._failed = exc
                with contextlib.suppress(OSError):
                    self._file.truncate(start)
                raise LogWriteError(
                    f"{self.directory}: append failed, log closed for writing: {exc}"
                ) from exc
            self._size = start + len(data)
            self._next_seq = seq
            return spans

    def _rotate(self, first_seq: int) -> None:
        if self._file is not None:
            if self.fsync:
                _sync_data(self._file.fileno())
            self._file.close()
            self._file = None
        path = self.directory / segment_name(first_seq)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open for appends
        self._size = os.fstat(self._file.fileno()).st_size
        self._segment_first = first_seq
        if self.fsync:
            _sync_data(self._file.fileno())
            fsync_dir(self.directory)

    # -- read helpers (bounded by what this writer acknowledged) ----------------------------------
    def iter_events(self, start_seq: int = 0, end_seq: int | None = None) -> Iterator[tuple[int, StoreEvent]]:
        end = self.last_seq if end_seq is None else min(end_seq, self.last_seq)
        return self.reader.iter_events(start_seq, end)

    def read_batch(
        self, start_seq: int, limit: int, end_seq: int | None = None, cursor: Cursor | None = None
    ) -> tuple[list[tuple[int, StoreEvent]], Cursor | None]:
        end = self.last_seq if end_seq is None else min(end_seq, self.last_seq)
        return self.reader.read_batch(start_seq, limit, end, cursor)

    def to_arrow_table(self) -> pa.Table:
        return self.reader.to_arrow_table()

    def write_parquet(self, path: str | Path) -> int:
        return self.reader.write_parquet(path)

    # -- close -------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    if self.fsync and self._failed is None:
                        _sync_data(self._file.fileno())
                finally:
                    self._file.close()
                    self._file = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- one sub-log per worker process ----------------------------------------------------------------
def _lock_held(directory: Path) -> bool:
    """True when a writer holds ``directory``'s LOCK right now (probing takes it for an instant)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock, if it got it
    return False


def claim_worker_log(
    base: str | Path,
    max_workers: int = DEFAULT_MAX_WORKERS,
    *,
    fsync: bool = True,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    replica: str | None = None,
) -> tuple[int, EventLog]:
    """Open ``base/worker-<i>`` as its writer for the smallest free ``i < max_workers``.

    A slot is free when no process holds its lock, so a restarted worker takes a slot back (and
    recovers its torn tail). Raises :class:`EventLogError` when every slot is held, when ``base``
    is itself a single-writer log (has segments, or a writer holds its ``LOCK``), and
    :class:`CorruptLogError` when the free slot's log cannot be recovered (never skipped: its
    events are acknowledged ones). ``fsync``, ``segment_bytes`` and ``replica`` are passed to
    :class:`EventLog`.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    own = list_segments(base)
    if own:
        raise EventLogError(
            f"{base}: is a single-writer event log ({own[0].path.name}, …); per-worker logs go in an "
            "empty directory (or move the segments into worker-0/ first)"
        )
    for i in range(max_workers):
        directory = base / f"{WORKER_PREFIX}{i}"
        created = not directory.exists()
        try:
            event_log = EventLog(directory, fsync=fsync, segment_bytes=segment_bytes, replica=replica)
        except LogLockedError:
            continue
        if _lock_held(base):  # a single writer of base itself, racing with us
            event_log.close()
            if created:
                with contextlib.suppress(OSError):
                    (directory / LOCK_FILE).unlink()
                    (directory / REPLICA_FILE).unlink()
                    directory.rmdir()
            raise EventLogError(f"{base}: is open for writing as a single-writer event log")
        return i, event_log
    raise EventLogError(
        f"{base}: all {max_workers} worker event logs ({WORKER_PREFIX}0 … {WORKER_PREFIX}{max_workers - 1}) "
        "are held by other processes"
    )


def log_is_locked(directory: Path) -> bool:
    """Whether a writer holds ``directory``'s lock now (a free or missing directory is not locked):
    lets a second server refuse up front instead of failing inside its start-up."""
    path = Path(directory) / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

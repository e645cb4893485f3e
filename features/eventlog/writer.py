"""Writing an event log: :class:`EventLog`, the single writer of a log directory (an exclusive
``flock`` on ``LOCK``), which recovers a torn tail on open and appends batches durably (one write and
one ``fdatasync`` per group commit)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.base import StoreEvent
from features.eventlog.errors import CorruptLogError, LogLockedError, LogWriteError
from features.eventlog.framing import (
    HEADER,
    BadFrame,
    PreparedBatch,
    frame,
    prepare_batch,
    scan_frames,
    valid_frame_after,
)
from features.eventlog.reader import Cursor, LogReader
from features.eventlog.replica import record_replica
from features.eventlog.segments import LOCK_FILE, fsync_dir, list_segments, refuse_worker_parent, segment_name

log = logging.getLogger("features.eventlog")

DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class RecoveryReport:
    segment: str | None = None
    truncated_at: int | None = None
    dropped_bytes: int = 0
    torn_records: int = 0
    """Torn/corrupt trailing records cut off (a torn batch counts as one: its length is unknowable)."""


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
            refuse_worker_parent(self.directory, "open one of them with claim_worker_log()")
            self.replica = record_replica(self.directory, replica, fsync)
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
                for seq, _off, end, _payload in scan_frames(f, 0, size, seg.first_seq):
                    next_seq = seq + 1
                    good_end = end
            except BadFrame as bad:
                if valid_frame_after(seg.path, bad.offset, next_seq) is not None:
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

"""Reading an event log: :class:`LogReader` (one log, in sequence order, no lock: safe while a writer
appends), resumable with a :class:`Cursor`, and the log as the ``recsys.schema.EVENTS`` table
(:func:`load_event_log` reads every sub-log of a directory)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from features.base import StoreEvent
from features.eventlog.errors import CorruptLogError, EventLogError
from features.eventlog.framing import BadFrame, decode_event, scan_frames, valid_frame_after
from features.eventlog.segments import list_segments, log_dirs, refuse_worker_parent
from recsys.schema import EVENTS

log = logging.getLogger("features.eventlog")

ARROW_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class Cursor:
    """Where the record ``next_seq`` starts: lets a reader resume without rescanning a segment."""

    segment_first_seq: int
    offset: int
    next_seq: int


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
        refuse_worker_parent(self.directory, "read it with load_event_log(), or each of log_dirs()")

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
                    for seq, _off, end, payload in scan_frames(f, offset, size, expected):
                        last_seen = seq
                        if seq < start_seq:
                            continue
                        if end_seq is not None and seq > end_seq:
                            return
                        ev = decode_event(payload, f"{seg.path} at byte {_off}")
                        yield seq, ev, Cursor(seg.first_seq, end, seq + 1)
                        if end_seq is not None and seq == end_seq:
                            return
                except BadFrame as bad:
                    where = f"{seg.path}: corrupt record at byte {bad.offset} ({bad.reason})"
                    if not is_last or valid_frame_after(seg.path, bad.offset, last_seen + 1) is not None:
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

"""The durable event log: round trips across segments, torn-tail recovery, corruption, Arrow output."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.base import StoreEvent
from features.errors import InvalidEventError
from features.eventlog import (
    HEADER,
    CorruptLogError,
    EventLog,
    LogLockedError,
    LogReader,
    list_segments,
    load_event_log,
)
from recsys.schema import EVENTS


def make_event(i: int) -> StoreEvent:
    actions = ("impression", "click", "share", "buy", "hide")
    return StoreEvent(
        ts=1_700_000_000.75 + i,
        user_id=i % 7,
        item_id=100 + i,
        action=actions[i % len(actions)],
        kol_id=None if i % 3 == 0 else 10 + i % 4,
        post_id=None if i % 2 else 500 + i,
        to_user_id=(i + 1) % 7 if actions[i % len(actions)] == "share" else None,
        category="beauty" if i % 2 else None,
        value=float(i % 5) * 9.5,
        request_id=None if i % 4 == 0 else f"req-{i}",
    )


def batches(n_batches: int, size: int) -> list[list[StoreEvent]]:
    return [[make_event(b * size + j) for j in range(size)] for b in range(n_batches)]


def test_round_trip_across_segment_rotations(tmp_path: Path) -> None:
    written: list[StoreEvent] = []
    with EventLog(tmp_path, fsync=False, segment_bytes=4096) as log:
        for i, batch in enumerate(batches(40, 1 + (7 * 13) % 11)):
            first, last = log.append_batch(batch)
            assert (first, last) == (len(written) + 1, len(written) + len(batch)), i
            written.extend(batch)
        assert log.last_seq == len(written)
        in_log = list(log.iter_events())
    segments = list_segments(tmp_path)
    assert len(segments) >= 4, "expected several rotations"
    # Each segment is named after its first sequence number and they chain without gaps.
    reader = LogReader(tmp_path)
    got = list(reader.iter_events())
    assert [seq for seq, _ in got] == list(range(1, len(written) + 1))
    assert [ev for _, ev in got] == written
    assert in_log == got
    starts = [s.first_seq for s in segments]
    assert starts[0] == 1 and all(any(seq == s for seq, _ in got) for s in starts)
    # Reading from the middle, across a segment boundary.
    mid = starts[2] - 3
    assert [seq for seq, _ in reader.iter_events(mid)][:5] == list(range(mid, mid + 5))
    assert reader.end_seq() == len(written)


def test_reopen_continues_sequence_and_segment(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=True) as log:
        assert log.append_batch([make_event(0), make_event(1)]) == (1, 2)
    with EventLog(tmp_path) as log:
        assert log.last_seq == 2
        assert log.recovery.torn_records == 0
        assert log.append_batch([make_event(2)]) == (3, 3)
        assert log.append_batch([]) == (4, 3)
    assert [ev for _, ev in LogReader(tmp_path).iter_events()] == [make_event(i) for i in range(3)]


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=False), pytest.raises(LogLockedError, match="already open"):
        EventLog(tmp_path, fsync=False)


def test_invalid_event_is_rejected_before_writing(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=False) as log:
        with pytest.raises(InvalidEventError, match="unknown action 'teleport'"):
            log.append_batch([make_event(0), StoreEvent(ts=1.0, user_id=1, item_id=2, action="teleport")])
        assert log.last_seq == 0
        assert log.append_batch([make_event(0)]) == (1, 1)


@pytest.mark.parametrize("cut", [3, HEADER.size + 5])
def test_torn_last_record_is_truncated_and_sequence_continues(tmp_path: Path, cut: int) -> None:
    with EventLog(tmp_path, fsync=False, segment_bytes=1 << 20) as log:
        for batch in batches(5, 4):
            log.append_batch(batch)
    seg = list_segments(tmp_path)[-1].path
    size = seg.stat().st_size
    # Cut the last record mid-way (a torn write), then append garbage after it.
    with open(seg, "r+b") as f:
        f.truncate(size - cut)
        f.seek(0, os.SEEK_END)
        f.write(b"\x07garbage-after-a-torn-write\xff" * 3)
    reader_view = [seq for seq, _ in LogReader(tmp_path).iter_events()]
    assert reader_view == list(range(1, 20)), "readers stop cleanly at a torn tail"
    with EventLog(tmp_path, fsync=False) as log:
        assert log.recovery.torn_records == 1
        assert log.recovery.dropped_bytes > 0
        assert log.last_seq == 19
        assert log.append_batch([make_event(99)]) == (20, 20)
    got = list(LogReader(tmp_path).iter_events())
    assert [seq for seq, _ in got] == list(range(1, 21))
    assert [ev for _, ev in got[:19]] == [make_event(i) for i in range(19)]
    assert got[-1][1] == make_event(99)


def test_corrupt_record_in_the_middle_is_a_clear_error(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=False, segment_bytes=1 << 20) as log:
        for batch in batches(4, 5):
            log.append_batch(batch)
    seg = list_segments(tmp_path)[0].path
    data = bytearray(seg.read_bytes())
    # Find the start of the 8th record by walking the frames, then flip a payload byte.
    offset = 0
    for _ in range(7):
        length = HEADER.unpack_from(data, offset)[0]
        offset += HEADER.size + length
    data[offset + HEADER.size + 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(
        CorruptLogError, match=rf"{seg.name}: corrupt record at byte {offset} \(CRC mismatch\)"
    ):
        list(LogReader(tmp_path).iter_events())
    with pytest.raises(CorruptLogError, match=rf"{seg.name}: corrupt record at byte {offset}"):
        EventLog(tmp_path, fsync=False)
    # The first seven records are still readable before the error.
    seen = []
    with pytest.raises(CorruptLogError):
        for seq, _ in LogReader(tmp_path).iter_events():
            seen.append(seq)
    assert seen == list(range(1, 8))


def test_corruption_in_an_earlier_segment_names_it(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=False, segment_bytes=2048) as log:
        for batch in batches(10, 5):
            log.append_batch(batch)
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    with open(segs[1].path, "r+b") as f:
        f.seek(HEADER.size + 1)
        f.write(b"\x00\x00")
    with pytest.raises(CorruptLogError, match=rf"{segs[1].path.name}: corrupt record at byte 0"):
        list(LogReader(tmp_path).iter_events())


def test_arrow_table_has_exactly_the_events_schema(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(12)]
    with EventLog(tmp_path / "log", fsync=False) as log:
        log.append_batch(events)
        table = log.to_arrow_table()
    assert table.schema.equals(EVENTS.arrow_schema())
    assert table.column_names == list(EVENTS.column_names)
    assert table.num_rows == 12
    assert table.column("ts").to_pylist()[:2] == [1_700_000_000, 1_700_000_001]
    assert table.column("action").to_pylist() == [e.action for e in events]
    assert table.column("kol_id").to_pylist()[0] is None
    assert table.column("request_id").to_pylist()[:2] == [None, "req-1"]
    loaded = load_event_log(tmp_path / "log")
    assert loaded.equals(table)
    rows = LogReader(tmp_path / "log").write_parquet(tmp_path / "events.parquet")
    assert rows == 12
    assert pq.read_table(tmp_path / "events.parquet").equals(table)


def test_empty_log_reads_as_empty_table(tmp_path: Path) -> None:
    EventLog(tmp_path, fsync=False).close()
    table = load_event_log(tmp_path)
    assert table.num_rows == 0 and table.schema.equals(EVENTS.arrow_schema())

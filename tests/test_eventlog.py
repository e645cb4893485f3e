"""The durable event log: round trips across segments, torn-tail recovery, corruption, Arrow output,
and the per-worker sub-logs of a multi-process service (claiming slots, resolving, reading them all)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.base import StoreEvent
from features.errors import InvalidEventError
from features.eventlog import (
    HEADER,
    CorruptLogError,
    EventLog,
    EventLogError,
    LogLockedError,
    LogReader,
    claim_worker_log,
    events_to_record_batch,
    list_segments,
    load_event_log,
    log_dirs,
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


# -- per-worker logs (kolfeed serve --workers N) ----------------------------------------------------
def test_claim_worker_log_takes_the_lowest_free_slot(tmp_path: Path) -> None:
    base = tmp_path / "eventlog"
    # flock locks an open file description, so two claims in ONE process exclude each other too
    i0, log0 = claim_worker_log(base, fsync=False)
    i1, log1 = claim_worker_log(base, fsync=False)
    assert (i0, i1) == (0, 1)
    assert (log0.directory, log1.directory) == (base / "worker-0", base / "worker-1")
    log0.append_batch([make_event(0), make_event(1)])
    log0.close()
    again, log0 = claim_worker_log(base, fsync=False)
    assert again == 0 and log0.last_seq == 2, "a restarted worker takes its slot and log back"
    with pytest.raises(EventLogError, match=rf"{base}: all 2 worker event logs .* held by other processes"):
        claim_worker_log(base, max_workers=2)
    i2, log2 = claim_worker_log(base, max_workers=3, fsync=False)
    assert i2 == 2
    for held in (log0, log1, log2):
        held.close()
    assert log_dirs(base) == [base / f"worker-{i}" for i in range(3)]


def test_a_reclaimed_worker_log_recovers_its_torn_tail(tmp_path: Path) -> None:
    _, log = claim_worker_log(tmp_path, fsync=False)
    log.append_batch(batches(1, 5)[0])
    log.close()
    seg = list_segments(tmp_path / "worker-0")[-1].path
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)
    index, log = claim_worker_log(tmp_path, fsync=False)
    with log:
        assert index == 0 and log.recovery.torn_records == 1 and log.last_seq == 4


def test_worker_slots_are_exclusive_across_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from features.eventlog import claim_worker_log\n"
            f"i, log = claim_worker_log({str(tmp_path)!r}, fsync=False)\n"
            "print(i, flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
        index, log = claim_worker_log(tmp_path, fsync=False)
        log.close()
        assert index == 1
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    index, log = claim_worker_log(tmp_path, fsync=False)
    log.close()
    assert index == 0, "the slot is free again once its process is gone"


def test_log_dirs_resolves_plain_and_worker_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert log_dirs(plain) == [plain]  # empty: a log nobody wrote yet
    with EventLog(plain, fsync=False) as log:
        log.append_batch([make_event(0)])
    assert log_dirs(plain) == [plain]

    parent = tmp_path / "parent"
    for i in (10, 2, 0, 9, 1):
        (parent / f"worker-{i}").mkdir(parents=True)
    (parent / "worker-x").mkdir()
    (parent / "workers").mkdir()
    (parent / "worker-3").write_text("a file, not a log")
    (parent / "LOCK").touch()  # left by an old single-process run: holds no events
    assert log_dirs(parent) == [parent / f"worker-{i}" for i in (0, 1, 2, 9, 10)]

    with pytest.raises(EventLogError, match="does not exist"):
        log_dirs(tmp_path / "absent")


def test_single_writer_and_worker_layouts_do_not_mix(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    with EventLog(plain, fsync=False) as log:
        log.append_batch([make_event(0)])
    with pytest.raises(EventLogError, match=f"{plain}: is a single-writer event log"):
        claim_worker_log(plain)
    assert log_dirs(plain) == [plain], "the refused claim left no worker directory behind"

    mixed = tmp_path / "mixed"
    with EventLog(mixed, fsync=False) as log:
        log.append_batch([make_event(0)])
    (mixed / "worker-0").mkdir()
    with pytest.raises(EventLogError, match=f"{mixed}: holds both its own segments"):
        log_dirs(mixed)
    with pytest.raises(EventLogError, match="both its own segments"):
        load_event_log(mixed)

    parent = tmp_path / "parent"
    claim_worker_log(parent, fsync=False)[1].close()
    with pytest.raises(EventLogError, match=f"{parent}: holds per-worker event logs \\(worker-0\\)"):
        EventLog(parent, fsync=False)
    assert not list_segments(parent)
    with pytest.raises(EventLogError, match="per-worker event logs"):
        LogReader(parent)  # would otherwise read no event at all


def test_single_writer_holding_the_parent_refuses_a_claim(tmp_path: Path) -> None:
    with EventLog(tmp_path, fsync=False), pytest.raises(EventLogError, match="open for writing as a single"):
        claim_worker_log(tmp_path)
    assert log_dirs(tmp_path) == [tmp_path]


def test_load_event_log_merges_worker_logs_by_time(tmp_path: Path) -> None:
    def at(ts: float, user: int) -> StoreEvent:
        return StoreEvent(ts=ts, user_id=user, item_id=user * 10, action="click")

    t = 1_700_000_000.0
    first = [at(t + 5.2, 0), at(t + 1.0, 0), at(t + 9.0, 0), at(t + 3.9, 0)]  # not in ts order
    second = [at(t + 3.5, 1), at(t + 5.7, 1), at(t + 0.5, 1), at(t + 12.0, 1)]
    _, log0 = claim_worker_log(tmp_path, fsync=False)
    _, log1 = claim_worker_log(tmp_path, fsync=False)
    with log0, log1:
        for a, b in zip(first, second, strict=True):
            log1.append_batch([b])
            log0.append_batch([a])
        table = load_event_log(tmp_path)  # readers need no lock: fine while both write
    # ordered by (whole-second) ts; ties keep log order: worker-0's before worker-1's, then seq
    expected = sorted(first + second, key=lambda e: int(e.ts // 1))
    order = [(int(e.ts - t), e.user_id) for e in expected]
    assert order == [(0, 1), (1, 0), (3, 0), (3, 1), (5, 0), (5, 1), (9, 0), (12, 1)]
    assert table.schema.equals(EVENTS.arrow_schema())
    assert table.equals(pa.Table.from_batches([events_to_record_batch(expected)]))


def test_load_event_log_of_empty_worker_logs_is_an_empty_table(tmp_path: Path) -> None:
    for _ in range(2):
        claim_worker_log(tmp_path, fsync=False)[1].close()
    table = load_event_log(tmp_path)
    assert table.num_rows == 0 and table.schema.equals(EVENTS.arrow_schema())

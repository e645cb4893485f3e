"""Group commit: concurrent requests share one write + fsync, and none is answered before its fsync."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

import features.eventlog as eventlog_mod
import features.eventlog.writer as eventlog_writer
from features.base import StoreEvent
from features.errors import InvalidEventError
from features.eventlog import EventLog, LogReader, LogWriteError
from features.group_commit import GroupCommitter
from features.memory import MemoryStore
from features.replay import Replayer

NOW = 1_700_000_000.0


def buy(i: int) -> StoreEvent:
    return StoreEvent(ts=NOW + i, user_id=i % 7, item_id=10_000 + i, action="buy", kol_id=3)


class CountingSync:
    """Stands in for fdatasync: counts calls and can hold the first one until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._real = eventlog_writer._sync_data

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        self._real(fd)


@pytest.fixture
def committer(tmp_path: Path) -> tuple[GroupCommitter, EventLog, MemoryStore]:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / eventlog_mod.segment_name(1)).touch()  # so no fsync is a segment creation's
    log = EventLog(tmp_path / "log")
    return GroupCommitter(log, Replayer(log, fsync=False)), log, MemoryStore()


async def test_concurrent_requests_share_one_fsync_per_group(
    committer: tuple[GroupCommitter, EventLog, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc, log, store = committer
    sync = CountingSync()
    monkeypatch.setattr(eventlog_writer, "_sync_data", sync)
    results = await asyncio.gather(*(gc.submit([buy(2 * i), buy(2 * i + 1)], store) for i in range(40)))
    assert gc.stats.requests == 40 and gc.stats.events == 80
    assert sync.calls == gc.stats.groups < 40, "every request paid its own fsync"
    # each request got its own contiguous span, together covering 1..80 without gaps
    spans = sorted((r.first_seq, r.last_seq) for r in results)
    assert [s for span in spans for s in span] == [s for k in range(40) for s in (2 * k + 1, 2 * k + 2)]
    by_seq = dict(LogReader(log.directory).iter_events())
    for i, r in enumerate(results):
        assert [by_seq[r.first_seq].item_id, by_seq[r.last_seq].item_id] == [10_000 + 2 * i, 10_001 + 2 * i]
    assert all(r.applied_to_store and r.accepted == 2 for r in results)
    states = await store.user_states(list(range(7)), now=NOW + 1_000)
    assert sum(len(s.bought) for s in states) == 80
    log.close()


async def test_no_request_is_answered_before_the_fsync_covering_it(
    committer: tuple[GroupCommitter, EventLog, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc, log, store = committer
    sync = CountingSync(hold_first=True)
    monkeypatch.setattr(eventlog_writer, "_sync_data", sync)
    first = asyncio.ensure_future(gc.submit([buy(0)], store))
    await asyncio.to_thread(sync.entered.wait, 30)  # the first group is inside its fsync
    later = [asyncio.ensure_future(gc.submit([buy(i)], store)) for i in range(1, 10)]
    await asyncio.sleep(0.05)
    assert not first.done() and not any(t.done() for t in later)
    sync.release.set()
    results = await asyncio.gather(first, *later)
    assert [r.first_seq for r in results] == list(range(1, 11))
    assert sync.calls == 2, "the nine requests queued during the first fsync form one group"
    log.close()


async def test_an_invalid_batch_fails_alone(committer: tuple[GroupCommitter, EventLog, MemoryStore]) -> None:
    gc, log, store = committer
    bad = StoreEvent(ts=NOW, user_id=1, item_id=2, action="teleport")
    outcomes = await asyncio.gather(
        gc.submit([buy(0)], store),
        gc.submit([bad], store),
        gc.submit([buy(1)], store),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], InvalidEventError)
    assert [getattr(o, "first_seq", None) for o in outcomes] == [1, None, 2]
    assert log.last_seq == 2
    log.close()


async def test_a_failed_fsync_acknowledges_nobody_in_the_group(
    committer: tuple[GroupCommitter, EventLog, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc, log, store = committer
    await gc.submit([buy(0)], store)

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(eventlog_writer, "_sync_data", broken_disk)
    outcomes = await asyncio.gather(
        *(gc.submit([buy(i)], store) for i in range(1, 6)), return_exceptions=True
    )
    assert all(isinstance(o, LogWriteError) for o in outcomes), outcomes
    with pytest.raises(LogWriteError):  # the log stays closed for writing until reopened
        await gc.submit([buy(9)], store)
    log.close()
    assert [seq for seq, _ in LogReader(log.directory).iter_events()] == [1]


async def test_events_wait_for_the_replayer_when_the_store_is_behind(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    log.append_batch([buy(0)])  # logged but not in the store: the replayer is behind
    gc = GroupCommitter(log, Replayer(log, fsync=False))
    store = MemoryStore()
    r = await gc.submit([buy(1)], store)
    assert (r.first_seq, r.last_seq, r.applied_to_store) == (2, 2, False)
    log.close()


def test_a_group_is_bounded_but_takes_at_least_one_request(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    with pytest.raises(ValueError, match="max_group_events"):
        GroupCommitter(log, Replayer(log), max_group_events=0)
    gc = GroupCommitter(log, Replayer(log, fsync=False), max_group_events=3)

    async def run() -> None:
        store = MemoryStore()
        big = [buy(i) for i in range(5)]
        results = await asyncio.gather(
            gc.submit(big, store), gc.submit([buy(5)], store), gc.submit([buy(6)], store)
        )
        assert [(r.first_seq, r.last_seq) for r in results] == [(1, 5), (6, 6), (7, 7)]

    asyncio.run(run())
    assert gc.stats.groups == 2 and gc.stats.largest_group == 2
    log.close()


async def test_the_next_group_is_fsynced_while_the_store_applies_the_previous_one(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    gc = GroupCommitter(log, Replayer(log, fsync=False))
    entered, release = asyncio.Event(), asyncio.Event()

    class SlowStore(MemoryStore):
        async def record_events(self, events: Sequence[StoreEvent]) -> None:
            entered.set()
            await release.wait()
            await super().record_events(events)

    store = SlowStore()
    first = asyncio.ensure_future(gc.submit([buy(0)], store))
    await asyncio.wait_for(entered.wait(), 30)  # group 1 is durable and in the store step
    second = asyncio.ensure_future(gc.submit([buy(1)], store))
    for _ in range(600):
        if log.last_seq == 2:
            break
        await asyncio.sleep(0.05)
    assert log.last_seq == 2, "the second group waited for the first one's store step"
    assert not first.done() and not second.done()  # answered only after their store step
    release.set()
    a, b = await asyncio.gather(first, second)
    assert (a.first_seq, b.first_seq) == (1, 2) and a.applied_to_store and b.applied_to_store
    await gc.aclose()
    log.close()


async def test_a_cancelled_request_does_not_cancel_its_group(
    committer: tuple[GroupCommitter, EventLog, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request awaits its place under ``asyncio.shield`` (as serving/routers/events.py does): if it
    is cancelled (deadline, client gone) while its group is in the fsync, the group still completes
    for everyone else, and its event is logged (just not acknowledged)."""
    gc, log, store = committer
    sync = CountingSync(hold_first=True)
    monkeypatch.setattr(eventlog_writer, "_sync_data", sync)
    gone = asyncio.ensure_future(asyncio.shield(gc.enqueue([buy(0)], store)))
    stays = asyncio.ensure_future(asyncio.shield(gc.enqueue([buy(1)], store)))
    await asyncio.to_thread(sync.entered.wait, 30)
    gone.cancel()
    await asyncio.sleep(0)
    sync.release.set()
    result = await stays
    assert gone.cancelled() and (result.first_seq, result.applied_to_store) == (2, True)
    assert (gc.stats.groups, gc.stats.requests) == (1, 2)
    assert [ev.item_id for _, ev in LogReader(log.directory).iter_events()] == [10_000, 10_001]
    assert (await gc.submit([buy(2)], store)).first_seq == 3  # the log is still open for appends
    log.close()


def test_an_invalid_batch_is_refused_before_it_is_queued(
    committer: tuple[GroupCommitter, EventLog, MemoryStore],
) -> None:
    gc, log, store = committer

    async def go() -> None:
        with pytest.raises(InvalidEventError):
            gc.enqueue([StoreEvent(ts=NOW, user_id=1, item_id=2, action="teleport")], store)
        assert gc._queue == [] and (await gc.enqueue([], store)).accepted == 0

    asyncio.run(go())
    log.close()

"""Replay of the event log into the store: memory://, the REAL Redis (the test db), and an outage.

The outage is real too: a redis:// URL at a port where nothing listens raises StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from features.base import FeatureStore, StoreEvent
from features.errors import StoreUnavailable
from features.eventlog import EventLog, LogLockedError, LogReader, claim_worker_log
from features.factory import open_store
from features.memory import MemoryStore
from features.replay import POSITION_FILE, Replayer, log_and_apply, read_position, rebuild_store, run_replayer

DEAD_URL = "redis://127.0.0.1:6391/13"
NOW = 1_700_000_000.0


def click(i: int, user: int = 1) -> StoreEvent:
    return StoreEvent(ts=NOW + i, user_id=user, item_id=1000 + i, action="click", kol_id=7)


def buy(i: int, user: int = 2) -> StoreEvent:
    return StoreEvent(ts=NOW + i, user_id=user, item_id=5000 + i, action="buy", kol_id=8, category="home")


async def bought_count(store: FeatureStore, user: int) -> int:
    state = await store.user_state(user, now=NOW + 10_000)
    return len(state.bought)


BUYERS = range(20, 25)


async def total_bought(store: FeatureStore) -> int:
    """Distinct bought items over the users ``fill_log`` spreads its buys across."""
    return sum(len(s.bought) for s in await store.user_states(list(BUYERS), now=NOW + 10_000))


async def redis_total_bought(url: str) -> int:
    """``total_bought`` of the store at ``url``, opened and closed for this one check."""
    store = open_store(url)
    try:
        return await total_bought(store)
    finally:
        await store.close()


@pytest.fixture
def redis13(redis_url: str) -> str:
    """The test db (KOLFEED_TEST_REDIS_DB, emptied around the test) with a unique key prefix; a fixed
    db here would flush whichever checkout's test db that number is."""
    prefix = f"kf:test-replay-{uuid.uuid4().hex[:8]}:"
    return f"{redis_url}?prefix={prefix}&socket_timeout=2&socket_connect_timeout=2"


def fill_log(directory: Path, n_buys: int, batch: int = 37, first: int = 0) -> EventLog:
    """A log of ``n_buys`` buys of distinct items ``5000 + first …`` spread over ``BUYERS``."""
    log = EventLog(directory, fsync=False, segment_bytes=8192)
    events = [buy(i, user=BUYERS[i % len(BUYERS)]) for i in range(first, first + n_buys)]
    for start in range(0, n_buys, batch):
        log.append_batch(events[start : start + batch])
    return log


async def test_replay_into_memory_store_in_batches_and_is_idempotent_per_call(tmp_path: Path) -> None:
    log = fill_log(tmp_path, 1234)
    store = open_store("memory://")
    replayer = Replayer(log, fsync=False)
    assert replayer.position == 0 and replayer.pending == 1234
    first = await replayer.replay_pending(store)
    assert (first.applied, first.batches, first.position, first.pending, first.stopped) == (
        1234,
        3,
        1234,
        0,
        None,
    )
    assert await total_bought(store) == 1234
    again = await replayer.replay_pending(store)
    assert (again.applied, again.batches) == (0, 0)
    assert read_position(tmp_path / POSITION_FILE) == 1234
    # A new Replayer (after a restart) resumes from the stored position.
    log.append_batch([buy(5000, user=BUYERS[0])])
    later = await Replayer(log, fsync=False).replay_pending(store)
    assert (later.applied, later.position) == (1, 1235)
    assert await total_bought(store) == 1235
    log.close()


async def test_unavailable_store_leaves_position_then_real_redis_gets_everything(
    tmp_path: Path, redis13: str
) -> None:
    log = fill_log(tmp_path, 777)
    replayer = Replayer(log)
    dead = open_store(DEAD_URL)
    try:
        result = await replayer.replay_pending(dead)
    finally:
        await dead.close()
    assert result.applied == 0 and result.position == 0 and result.pending == 777
    assert result.stopped is not None and "unavailable" in result.stopped
    assert read_position(tmp_path / POSITION_FILE) == 0

    live = open_store(redis13)
    try:
        result = await replayer.replay_pending(live)
        assert (result.applied, result.position, result.pending, result.stopped) == (777, 777, 0, None)
        assert await total_bought(live) == 777
        assert read_position(tmp_path / POSITION_FILE) == 777
    finally:
        await live.clear()
        await live.close()
        log.close()


async def test_log_and_apply_keeps_order_through_an_outage(tmp_path: Path) -> None:
    log = EventLog(tmp_path, fsync=False)
    replayer = Replayer(log, fsync=False)
    memory = open_store("memory://")
    dead = open_store(DEAD_URL)

    ok = await log_and_apply(log, replayer, memory, [click(0), click(1)])
    assert (ok.accepted, ok.applied_to_store, ok.first_seq, ok.last_seq) == (2, True, 1, 2)
    assert replayer.position == 2

    down = await log_and_apply(log, replayer, dead, [buy(2)])
    assert (down.accepted, down.applied_to_store) == (1, False)
    assert replayer.position == 2 and replayer.pending == 1
    await dead.close()

    # The store is back, but seq 3 is still pending: the new batch must NOT jump the queue.
    behind = await log_and_apply(log, replayer, memory, [buy(3)])
    assert (behind.accepted, behind.applied_to_store) == (1, False)
    assert replayer.position == 2 and await bought_count(memory, 2) == 0

    caught_up = await replayer.replay_pending(memory)
    assert (caught_up.applied, caught_up.position) == (2, 4)
    assert await bought_count(memory, 2) == 2
    direct = await log_and_apply(log, replayer, memory, [buy(4)])
    assert direct.applied_to_store and replayer.position == 5
    assert [seq for seq, _ in log.iter_events()] == [1, 2, 3, 4, 5]
    log.close()


async def test_background_replayer_applies_pending_events_when_store_returns(tmp_path: Path) -> None:
    class Flaky:
        """A memory store that is 'down' until switched on (the outage itself is tested on Redis)."""

        def __init__(self) -> None:
            self.inner = open_store("memory://")
            self.url = "flaky://"
            self.up = False

        async def record_events(self, events: list[StoreEvent]) -> None:
            if not self.up:
                raise StoreUnavailable("down for the test")
            await self.inner.record_events(events)

    log = EventLog(tmp_path, fsync=False)
    replayer = Replayer(log, fsync=False)
    flaky = Flaky()
    stop = asyncio.Event()
    task = asyncio.create_task(run_replayer(flaky, replayer, 0.02, stop))  # type: ignore[arg-type]
    for i in range(10):
        result = await log_and_apply(log, replayer, flaky, [buy(i)])  # type: ignore[arg-type]
        assert result.accepted == 1 and not result.applied_to_store
    await asyncio.sleep(0.1)
    assert replayer.position == 0
    flaky.up = True
    for _ in range(200):
        if replayer.position == 10:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert replayer.position == 10
    assert await bought_count(flaky.inner, 2) == 10
    log.close()


async def test_rebuild_store_clears_and_replays_everything(tmp_path: Path) -> None:
    fill_log(tmp_path, 600).close()
    store = open_store("memory://")
    await store.record_events([buy(9999, user=3)])  # stale data the rebuild must drop
    result = await rebuild_store(tmp_path, store, clear=True, progress=False)
    assert (result.replayed, result.position, result.cleared) == (600, 600, True)
    assert await total_bought(store) == 600
    assert await bought_count(store, 3) == 0
    assert read_position(tmp_path / POSITION_FILE) == 600


def fill_worker_logs(base: Path, sizes: tuple[int, ...]) -> None:
    """``base/worker-<i>`` logs (as ``kolfeed serve --workers N`` leaves them) of distinct buys."""
    first = 0
    for i, n in enumerate(sizes):
        fill_log(base / f"worker-{i}", n, first=first).close()
        first += n


async def test_rebuild_store_replays_every_worker_log_and_refuses_while_one_is_owned(tmp_path: Path) -> None:
    fill_worker_logs(tmp_path, (600, 0, 250))
    store = open_store("memory://")
    await store.record_events([buy(9999, user=3)])  # stale data the rebuild must drop
    claimed = [claim_worker_log(tmp_path, fsync=False)[1] for _ in range(3)]
    claimed[0].close()
    claimed[1].close()
    owned = claimed[2]  # the last log is still owned by a running service worker
    assert owned.directory == tmp_path / "worker-2" and owned.last_seq == 250
    with pytest.raises(LogLockedError, match="worker-2"):
        await rebuild_store(tmp_path, store, clear=True, progress=False)
    assert await bought_count(store, 3) == 1, "refused before clearing anything"
    assert await total_bought(store) == 0
    owned.close()

    result = await rebuild_store(tmp_path, store, clear=True, progress=False)
    assert (result.replayed, result.position, result.cleared) == (850, 850, True)
    assert result.positions == {"worker-0": 600, "worker-1": 0, "worker-2": 250}
    assert await total_bought(store) == 850
    assert await bought_count(store, 3) == 0
    assert [read_position(tmp_path / f"worker-{i}" / POSITION_FILE) for i in range(3)] == [600, 0, 250]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-0", "worker-1", "worker-2"]


async def test_rebuild_into_unavailable_store_raises(tmp_path: Path) -> None:
    fill_log(tmp_path, 10).close()
    dead = open_store(DEAD_URL)
    try:
        with pytest.raises(StoreUnavailable):
            await rebuild_store(tmp_path, dead, clear=False, progress=False)
    finally:
        await dead.close()


def test_cli_store_rebuild_against_real_redis(tmp_path: Path, redis13: str) -> None:
    log_dir = tmp_path / "log"
    fill_log(log_dir, 321).close()
    cmd = [sys.executable, "-m", "kolfeed.cli", "store", "rebuild", "--log", str(log_dir), "--store", redis13]
    done = subprocess.run([*cmd, "--clear"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "321 events replayed" in done.stdout and "position=321" in done.stdout

    assert asyncio.run(redis_total_bought(redis13)) == 321
    assert json.loads((log_dir / POSITION_FILE).read_text())["seq"] == 321
    assert LogReader(log_dir).end_seq() == 321

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "kolfeed.cli",
            "store",
            "rebuild",
            "--log",
            str(tmp_path / "nope"),
            "--store",
            redis13,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_store_rebuild_of_worker_logs_against_real_redis(tmp_path: Path, redis13: str) -> None:
    fill_worker_logs(tmp_path / "log", (123, 77))
    cmd = [sys.executable, "-m", "kolfeed.cli", "store", "rebuild", "--log", str(tmp_path / "log")]
    done = subprocess.run([*cmd, "--store", redis13, "--clear"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "200 events replayed" in done.stdout
    assert "position=200 (worker-0=123, worker-1=77)" in done.stdout

    assert asyncio.run(redis_total_bought(redis13)) == 200


async def test_worker_outboxes_share_a_store_that_came_back_empty(tmp_path: Path) -> None:
    """Two workers' logs, one store: after the store loses everything each worker replays its own log
    and neither wipes what the other replayed (no store-wide clear with workers)."""
    from features.markers import log_marker_id
    from serving.outbox import Outbox

    fill_worker_logs(tmp_path, (300, 200))
    store = open_store("memory://")
    logs = [claim_worker_log(tmp_path, fsync=False)[1] for _ in range(2)]
    outboxes = [
        Outbox(Replayer(lg), store, log_marker_id(lg.directory), clear_on_rebuild=False) for lg in logs
    ]
    for rounds in range(3):
        for ob in outboxes:
            await ob.sync_once()
        assert await total_bought(store) == 500, f"round {rounds}"
        await store.clear()  # Redis restarted without persistence
    assert [ob.status.rebuilds for ob in outboxes] == [3, 3]
    for lg in logs:
        lg.close()


async def test_rebuild_store_leaves_the_store_marked_in_step(tmp_path: Path) -> None:
    """After ``kolfeed store rebuild`` a starting service finds its markers and replays nothing again."""
    from features.markers import log_marker_id
    from serving.outbox import Outbox

    fill_worker_logs(tmp_path, (120, 80))
    store = open_store("memory://")
    await rebuild_store(tmp_path, store, clear=True, progress=False)
    logs = [claim_worker_log(tmp_path, fsync=False)[1] for _ in range(2)]
    for lg in logs:
        ob = Outbox(Replayer(lg), store, log_marker_id(lg.directory), clear_on_rebuild=False)
        result = await ob.sync_once()
        assert ob.status.rebuilds == 0 and result.applied == 0
        lg.close()
    assert await total_bought(store) == 200


# ------------------------------------------------------------------ direct applies and the position file
async def trend_total(store: FeatureStore) -> float:
    return sum(score for _, score in await store.trending(10_000, now=NOW + 60))


async def trend_total_once(events: list[StoreEvent]) -> float:
    """The trending total of ``events`` recorded once into a fresh store (what exactly once gives)."""
    reference = MemoryStore()
    await reference.record_events(events)
    return await trend_total(reference)


async def test_direct_applies_leave_the_position_file_to_the_next_round_and_a_stale_file_counts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a log id the store holds the applied position, so direct applies do not rewrite the
    position file each time; the replayer's next round (or ``flush``) does. A process killed before
    that restarts from the stale file and the store skips what it already holds."""
    import features.replay as replay_mod

    writes: list[int] = []
    real_write = replay_mod.write_position

    def counting(path: Path, seq: int, fsync: bool = True) -> None:
        writes.append(seq)
        real_write(path, seq, fsync)

    monkeypatch.setattr(replay_mod, "write_position", counting)
    log = EventLog(tmp_path, fsync=False)
    store = MemoryStore()
    await store.seal_log(77, 0)
    replayer = Replayer(log, fsync=False, log_id=77)
    for i in range(50):
        assert (await log_and_apply(log, replayer, store, [buy(i, user=20)])).applied_to_store
    assert writes == [] and replayer.position == 50
    assert read_position(tmp_path / POSITION_FILE) == 0  # as after a SIGKILL right now

    restarted = Replayer(log, fsync=False, log_id=77)  # reads the stale file
    assert restarted.pending == 50
    result = await restarted.replay_pending(store)
    assert (result.pending, result.position) == (0, 50)
    assert await bought_count(store, 20) == 50
    assert await trend_total(store) == pytest.approx(
        await trend_total_once([buy(i, user=20) for i in range(50)])
    )
    assert read_position(tmp_path / POSITION_FILE) == 50  # a round writes it

    assert (await log_and_apply(log, restarted, store, [buy(50, user=20)])).applied_to_store
    assert read_position(tmp_path / POSITION_FILE) == 50
    await restarted.flush()  # the service's shutdown
    assert read_position(tmp_path / POSITION_FILE) == 51
    log.close()


async def test_a_group_the_replayer_applied_first_counts_as_applied(tmp_path: Path) -> None:
    """The outbox reads whatever the log holds, including groups fsynced but not yet applied by
    their requests; those requests then report them applied, and nothing is applied twice."""
    log = EventLog(tmp_path, fsync=False)
    store = MemoryStore()
    await store.seal_log(5, 0)
    replayer = Replayer(log, fsync=False, log_id=5)
    first = [buy(i, user=21) for i in range(3)]
    second = [buy(i, user=21) for i in range(3, 6)]
    s1, s2 = log.append_batch(first), log.append_batch(second)
    await replayer.replay_pending(store, until=s1[1] + 1)  # the outbox got the first group and one more
    assert await replayer.apply_appended(store, first, *s1)
    assert not replayer._wake.is_set(), "nothing is pending: no extra replay round"
    assert await replayer.apply_appended(store, second, *s2)  # the rest of the second group
    assert replayer.position == 6 and await bought_count(store, 21) == 6
    assert await trend_total(store) == pytest.approx(await trend_total_once(first + second))
    log.close()

"""SIGKILL during ingestion: every acknowledged event survives, and reaches the store after recovery.

A child process appends batches in a loop and prints each acknowledged ``last_seq`` (flushed) after
``append_batch`` returns; the test kills it with SIGKILL mid-stream, reopens the log and checks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.eventlog import EventLog, LogReader
from features.factory import open_store
from features.replay import Replayer
from tests.conftest import REDIS_TEST_DB

ROOT = Path(__file__).resolve().parents[1]
N_USERS = 100
NOW = 1_700_000_000

WRITER = """
import sys
from features.base import StoreEvent
from features.eventlog import EventLog

log = EventLog(sys.argv[1], fsync=sys.argv[2] == "1", segment_bytes=int(sys.argv[3]))
i = 0
size = 1
while True:
    batch = [
        StoreEvent(ts=NOW + k, user_id=k % N_USERS, item_id=k, action="buy", kol_id=k % 13)
        for k in range(i, i + size)
    ]
    first, last = log.append_batch(batch)
    assert first == i + 1, (first, i)
    i += size
    size = size % 20 + 1
    print(last, flush=True)
""".replace("NOW", str(NOW)).replace("N_USERS", str(N_USERS))

SERVICE = """
import asyncio, sys
from features.base import StoreEvent
from features.eventlog import EventLog
from features.factory import open_store
from features.replay import Replayer, log_and_apply

async def main() -> None:
    log = EventLog(sys.argv[1], fsync=True)
    replayer = Replayer(log)
    store = open_store(sys.argv[2])  # Redis is 'down': nothing listens there
    i = 0
    while True:
        batch = [
            StoreEvent(ts=NOW + k, user_id=k % N_USERS, item_id=k, action="buy", kol_id=k % 13)
            for k in range(i, i + 25)
        ]
        result = await log_and_apply(log, replayer, store, batch)
        i += 25
        print(result.last_seq, flush=True)

asyncio.run(main())
""".replace("NOW", str(NOW)).replace("N_USERS", str(N_USERS))

GROUP_COMMIT_SERVICE = """
import asyncio, itertools, sys
from features.base import StoreEvent
from features.eventlog import EventLog
from features.group_commit import GroupCommitter
from features.memory import MemoryStore
from features.replay import Replayer

async def main() -> None:
    log = EventLog(sys.argv[1], fsync=True)
    committer = GroupCommitter(log, Replayer(log, fsync=False))
    store = MemoryStore()
    counter = itertools.count()

    async def client() -> None:  # like one HTTP client posting single-event batches
        while True:
            k = next(counter)
            ev = StoreEvent(ts=NOW + k, user_id=k % N_USERS, item_id=k, action="buy", kol_id=k % 13)
            result = await committer.submit([ev], store)
            print(result.last_seq, k, flush=True)

    await asyncio.gather(*(client() for _ in range(32)))

asyncio.run(main())
""".replace("NOW", str(NOW)).replace("N_USERS", str(N_USERS))


def run_and_kill(code: str, args: list[str], cwd: Path, run_s: float = 0.7) -> list[int]:
    """Every acknowledged seq the child printed before :func:`run_and_kill_lines` killed it."""
    return [int(line.split()[0]) for line in run_and_kill_lines(code, args, cwd, run_s)]


def run_and_kill_lines(code: str, args: list[str], cwd: Path, run_s: float = 0.7) -> list[str]:
    """Start the child, let it acknowledge for ``run_s`` after its first ack, SIGKILL it, and
    return every complete line it printed (one per acknowledgement). stdout is drained
    continuously so the child is never blocked on a full pipe (it must be killed while appending,
    not while printing)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []
    first_ack = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            chunks.append(chunk)
            if b"\n" in chunk:
                first_ack.set()
        first_ack.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    first_ack.wait(60)  # imports take a while on a busy machine
    if proc.poll() is not None:
        pytest.fail(f"writer died before being killed: {proc.stderr.read().decode()[-2000:]}")
    time.sleep(run_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    assert proc.returncode == -signal.SIGKILL
    text = b"".join(chunks).decode()
    return text.split("\n")[:-1]  # a line without "\n" was not complete


@pytest.mark.parametrize("fsync", [True, False])
def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, fsync: bool) -> None:
    log_dir = tmp_path / "log"
    acked = run_and_kill(WRITER, [str(log_dir), "1" if fsync else "0", "262144"], tmp_path)
    assert len(acked) > 3 and acked == sorted(acked)
    last_acked = acked[-1]

    with EventLog(log_dir, fsync=fsync) as log:
        assert log.last_seq >= last_acked  # a batch written but not yet printed may also be there
        assert log.recovery.torn_records in (0, 1)
        seqs = []
        for seq, ev in log.iter_events():
            seqs.append(seq)
            assert ev.item_id == seq - 1 and ev.user_id == (seq - 1) % N_USERS and ev.action == "buy"
        assert seqs == list(range(1, log.last_seq + 1))
        # The log keeps working after the crash.
        nxt = log.last_seq + 1
        assert log.append_batch([ev for _, ev in log.iter_events(1, 2)]) == (nxt, nxt + 1)
    assert LogReader(log_dir).end_seq() == nxt + 1


def test_sigkill_under_group_commit_loses_no_acknowledged_event(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    lines = run_and_kill_lines(GROUP_COMMIT_SERVICE, [str(log_dir)], tmp_path)
    acked = {int(seq): int(k) for seq, k in (line.split() for line in lines)}
    assert len(acked) > 32

    with EventLog(log_dir) as log:
        logged = {seq: ev.item_id for seq, ev in log.iter_events()}
    assert list(logged) == list(range(1, len(logged) + 1))
    assert {seq: logged.get(seq) for seq in acked} == acked  # each acknowledged event where its 202 said
    assert len(set(logged.values())) == len(logged)  # and none written twice


@pytest.fixture
def redis_prefixed(redis_server: str) -> Iterator[str]:
    import redis

    prefix = f"kf:test-crash-{uuid.uuid4().hex[:8]}:"
    try:
        yield f"{redis_server}/{REDIS_TEST_DB}?prefix={prefix}&socket_timeout=2&socket_connect_timeout=2"
    finally:  # only this test's keys: the db may be shared with other tests running at the same time
        client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_TEST_DB)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def test_sigkill_during_redis_outage_then_recovery_store_has_every_acknowledged_event(
    tmp_path: Path, redis_prefixed: str
) -> None:
    log_dir = tmp_path / "log"
    acked = run_and_kill(SERVICE, [str(log_dir), "redis://127.0.0.1:6391/13"], tmp_path)
    last_acked = acked[-1]

    async def recover() -> tuple[int, int, int]:
        log = EventLog(log_dir)
        replayer = Replayer(log)
        assert replayer.position == 0, "nothing could have reached the dead store"
        store = open_store(redis_prefixed)
        try:
            result = await replayer.replay_pending(store)
            states = await store.user_states(list(range(N_USERS)), now=NOW + 10**6)
            bought = {item for s in states for item in s.bought}
        finally:
            await store.close()
            log.close()
        assert result.stopped is None
        assert bought == set(range(log.last_seq))  # exactly the logged events, each counted once
        return result.applied, len(bought), log.last_seq

    applied, in_store, in_log = asyncio.run(recover())
    assert in_log >= last_acked
    assert applied == in_store == in_log

"""Exactly-once application of the event log to the store, across Redis restarts.

A stream of logged events (each with a known weight) goes through the request path
(``log_and_apply``) and the outbox, while the test SIGKILLs its own Redis (a single redis-server, or
one primary of its own 3-primary cluster) mid-stream and restarts it empty. Direct applies then hit
the restarted store before the outbox notices. At the end the trending and KOL-affinity counters must
hold every event exactly once: totals are compared with the sum of the weights, so one event counted
twice (or lost) fails the test.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from features.base import FeatureStore, StoreEvent
from features.errors import StoreUnavailable
from features.eventlog import EventLog
from features.factory import open_store
from features.markers import log_marker_id
from features.replay import Replayer, log_and_apply
from kolfeed.bench.harness import RedisServer
from kolfeed.bench.local_cluster import LocalRedisCluster
from recsys.schema import DEFAULT_ACTION_WEIGHTS
from serving.outbox import Outbox

pytestmark = pytest.mark.slow
T0 = 1_700_000_000.0
EVENTS = 300
KILL_AT, RESTART_AT = 100, 140
CHECK_EVERY = 60
"""The outbox checks the store every CHECK_EVERY events: restarts are noticed late on purpose."""
FAST = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "pool_timeout": 0.5}


def stream() -> list[StoreEvent]:
    actions = ["click", "buy", "share", "like", "cart"]
    return [
        StoreEvent(T0, user_id=i % 23, item_id=1000 + i % 41, action=actions[i % 5], kol_id=i % 7)
        for i in range(EVENTS)
    ]


async def counted(store: FeatureStore, events: list[StoreEvent]) -> tuple[float, dict[int, float]]:
    """Total trending score and each user's total affinity, read back at the events' time."""
    trend = sum(score for _, score in await store.trending(10_000, now=T0))
    users = sorted({e.user_id for e in events})
    states = await store.user_states(users, now=T0)
    return trend, {u: sum(s.kol_affinity.values()) for u, s in zip(users, states, strict=True)}


def expected(events: list[StoreEvent]) -> tuple[float, dict[int, float]]:
    per_user: dict[int, float] = defaultdict(float)
    for e in events:
        per_user[e.user_id] += DEFAULT_ACTION_WEIGHTS[e.action]
    return sum(DEFAULT_ACTION_WEIGHTS[e.action] for e in events), dict(per_user)


async def run_stream(
    store: FeatureStore, log_dir: Path, kill: Callable[[], None], restart: Callable[[], None]
) -> None:
    events = stream()
    with EventLog(log_dir) as event_log:
        marker = log_marker_id(log_dir)
        replayer = Replayer(event_log, fsync=False, log_id=marker)
        outbox = Outbox(replayer, store, marker, clear_on_rebuild=False)
        await outbox.sync_once()  # a new log: sealed in the store
        direct_after_restart = 0
        for i, ev in enumerate(events):
            if i == KILL_AT:
                kill()
            if i == RESTART_AT:
                restart()
            result = await log_and_apply(event_log, replayer, store, [ev])
            if i >= RESTART_AT and result.applied_to_store:
                direct_after_restart += 1
            if i % CHECK_EVERY == CHECK_EVERY - 1:
                with contextlib.suppress(StoreUnavailable):
                    await outbox.sync_once()
        for _ in range(20):  # the outbox catches up (rebuilding what the restart lost)
            try:
                if (await outbox.sync_once()).pending == 0:
                    break
            except StoreUnavailable:
                pass
        assert replayer.pending == 0
        assert outbox.status.rebuilds >= 2  # the new log, then the restarted store
        trend, affinity = await counted(store, events)
        want_trend, want_affinity = expected(events)
        assert trend == pytest.approx(want_trend, rel=1e-9)
        assert affinity == pytest.approx(want_affinity, rel=1e-9)

        # A position file that lags the store (a crash between "store accepted" and "position
        # written") re-sends batches: the store skips them.
        await replayer.reset(0)
        await replayer.replay_pending(store)
        assert await counted(store, events) == (trend, affinity)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(log_path=tmp_path / "redis.log") as server:
        yield server


async def test_a_redis_restart_mid_stream_counts_every_event_exactly_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = open_store(redis_server.url(), prefix=f"kf:eo:{uuid.uuid4().hex[:6]}:", **FAST)
    try:
        await run_stream(store, tmp_path / "log", redis_server.kill, redis_server.start)
    finally:
        await store.close()


async def test_a_cluster_primary_restart_mid_stream_counts_every_event_exactly_once(tmp_path: Path) -> None:
    cluster = LocalRedisCluster.start(tmp_path / "cluster")
    store = open_store(cluster.url, prefix=f"kf:eo:{uuid.uuid4().hex[:6]}:", **FAST)
    try:
        await run_stream(store, tmp_path / "log", lambda: cluster.kill(0), lambda: cluster.restart(0))
    finally:
        await store.close()
        cluster.stop()

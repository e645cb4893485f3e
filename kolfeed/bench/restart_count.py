"""Exactly once across a Redis restart, counted: how many logged events the store's counters hold
twice, or not at all, after its Redis (or one primary of a Redis Cluster) is SIGKILLed mid-stream
and restarted empty.

Why a bench module: issue #14 wants "0 double-counted events in the restart test" as a measured
figure. ``tests/test_exactly_once.py`` runs this stream and asserts on what it returns, and
``kolfeed bench ingest`` records it in ``ingest.json`` for a single Redis and for a 3-primary
Redis Cluster.

The stream: ``events`` events, each on its own item, so an item's trending score read at the
events' own time is the action's weight times the number of times its event was applied. They go
through the request path (:func:`features.replay.log_and_apply`) and the outbox, which checks the
store only every ``check_every`` events (restarts are noticed late on purpose: direct applies reach
the restarted store first). Redis is SIGKILLed before event ``kill_at`` and restarted empty before
``restart_at``. Afterwards the outbox catches up; then the replay position is reset to 0 and the
whole log re-sent (a position file that lags the store), which must change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from features.base import FeatureStore, StoreEvent
from features.errors import StoreUnavailable
from features.eventlog import EventLog
from features.factory import open_store
from features.markers import log_marker_id
from features.replay import Replayer, log_and_apply
from recsys.schema import DEFAULT_ACTION_WEIGHTS
from serving.outbox import Outbox

T0 = 1_700_000_000.0
ITEM0 = 500_000
ACTIONS = ("click", "buy", "share", "like", "cart")
"""Actions with a positive weight: each one shows up in trending."""
FAST = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "pool_timeout": 0.5}
"""A dead Redis must fail a call quickly, not stall the stream."""
CATCH_UP_S = 30.0
"""How long the outbox may take to catch up after the stream (a restarted cluster node must rejoin)."""


@dataclass(frozen=True)
class RestartParams:
    events: int = 300
    kill_at: int = 100
    restart_at: int = 140
    check_every: int = 60


@dataclass
class RestartCount:
    store: str
    events: int
    applied_once: int
    double_counted: int
    """Events whose item's trending score is two or more times their weight."""
    lost: int
    """Events not in the trending counters at all."""
    trending_total: float
    trending_expected: float
    affinity_total: float
    affinity_expected: float
    double_counted_after_resend: int
    """The same count after the whole log was re-sent from position 0."""
    rebuilds: int
    direct_applies_after_restart: int
    pending_at_end: int


def stream(p: RestartParams) -> list[StoreEvent]:
    return [
        StoreEvent(T0, user_id=i % 23, item_id=ITEM0 + i, action=ACTIONS[i % len(ACTIONS)], kol_id=i % 7)
        for i in range(p.events)
    ]


async def applied_counts(store: FeatureStore, events: list[StoreEvent]) -> list[int]:
    """How many times each event is in the trending counters (score / weight, at the events' time)."""
    scores = dict(await store.trending(len(events) + 100, now=T0))
    return [round(scores.get(ev.item_id, 0.0) / DEFAULT_ACTION_WEIGHTS[ev.action]) for ev in events]


async def affinity_total(store: FeatureStore, events: list[StoreEvent]) -> float:
    users = sorted({e.user_id for e in events})
    states = await store.user_states(users, now=T0)
    return sum(sum(s.kol_affinity.values()) for s in states)


async def run_stream(
    store: FeatureStore,
    log_dir: Path,
    kill: Callable[[], object],
    restart: Callable[[], object],
    name: str,
    p: RestartParams = RestartParams(),
) -> RestartCount:
    events = stream(p)
    with EventLog(log_dir) as event_log:
        marker = log_marker_id(log_dir)
        replayer = Replayer(event_log, fsync=False, log_id=marker)
        outbox = Outbox(replayer, store, marker, clear_on_rebuild=False)
        await _first_sync(outbox)
        direct_after_restart = 0
        for i, ev in enumerate(events):
            if i == p.kill_at:
                kill()
            if i == p.restart_at:
                restart()
            result = await log_and_apply(event_log, replayer, store, [ev])
            if i >= p.restart_at and result.applied_to_store:
                direct_after_restart += 1
            if i % p.check_every == p.check_every - 1:
                with contextlib.suppress(StoreUnavailable):
                    await outbox.sync_once()
        await _catch_up(outbox)
        counts = await applied_counts(store, events)
        trend = sum(score for _, score in await store.trending(len(events) + 100, now=T0))
        affinity = await affinity_total(store, events)
        # A position file that lags the store (a crash between "store accepted" and "position
        # written") re-sends batches: the store must skip them.
        await replayer.reset(0)
        await replayer.replay_pending(store)
        resent = await applied_counts(store, events)
        weights = [DEFAULT_ACTION_WEIGHTS[e.action] for e in events]
        return RestartCount(
            store=name,
            events=len(events),
            applied_once=sum(1 for c in counts if c == 1),
            double_counted=sum(1 for c in counts if c > 1),
            lost=sum(1 for c in counts if c == 0),
            trending_total=round(trend, 6),
            trending_expected=sum(weights),
            affinity_total=round(affinity, 6),
            affinity_expected=sum(weights),  # every event names a creator
            double_counted_after_resend=sum(1 for c in resent if c > 1),
            rebuilds=outbox.status.rebuilds,
            direct_applies_after_restart=direct_after_restart,
            pending_at_end=replayer.pending,
        )


async def _catch_up(outbox: Outbox, timeout_s: float = CATCH_UP_S) -> None:
    """Let the outbox catch up (rebuilding what the restart lost). Bounded by time, not attempts:
    while a restarted node is still loading or its cluster still agreeing on slots, a sync fails
    within milliseconds, so a fixed number of tries ran out on a loaded machine before the store
    was back (the test then saw events still pending)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:  # past it, the figures show what is still pending
        try:
            if (await outbox.sync_once()).pending == 0:
                return
        except StoreUnavailable:
            await asyncio.sleep(0.2)


async def _first_sync(outbox: Outbox, attempts: int = 10) -> None:
    """Seal the new log in the store (a write to every cluster slot: under a loaded machine's
    short socket timeouts it may take a few attempts; nothing has been killed yet)."""
    for attempt in range(attempts):
        try:
            await outbox.sync_once()
            return
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


def _prefix() -> str:
    return f"kf:restart:{uuid.uuid4().hex[:6]}:"


async def single_redis(work: Path, p: RestartParams = RestartParams()) -> RestartCount:
    """The stream against a private redis-server (no persistence) killed and restarted empty."""
    from kolfeed.bench.harness import RedisServer

    with RedisServer(log_path=work / "redis.log") as server:
        store = open_store(server.url(), prefix=_prefix(), **FAST)
        try:
            return await run_stream(store, work / "log-redis", server.kill, server.start, "redis", p)
        finally:
            await store.close()


async def redis_cluster(work: Path, p: RestartParams = RestartParams()) -> RestartCount:
    """The stream against a local 3-primary Redis Cluster; primary 0 is killed and restarted empty."""
    from kolfeed.bench.local_cluster import LocalRedisCluster

    cluster = LocalRedisCluster.start(work / "cluster")
    try:
        store = open_store(cluster.url, prefix=_prefix(), **FAST)
        try:
            return await run_stream(
                store, work / "log-cluster", lambda: cluster.kill(0), lambda: cluster.restart(0), "cluster", p
            )
        finally:
            await store.close()
    finally:
        cluster.stop()


async def both(work: Path, p: RestartParams = RestartParams()) -> dict[str, Any]:
    """Both runs, as recorded in ``ingest.json``."""
    out: dict[str, Any] = {"params": asdict(p)}
    for name, runner in (("redis", single_redis), ("cluster", redis_cluster)):
        (work / name).mkdir(parents=True, exist_ok=True)
        out[name] = asdict(await runner(work / name, p))
    return out

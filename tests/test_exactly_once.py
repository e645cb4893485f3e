"""Exactly-once application of the event log to the store, across Redis restarts.

A stream of logged events, each on its own item, goes through the request path (``log_and_apply``)
and the outbox, while the test SIGKILLs its own Redis (a single redis-server, or one primary of its
own 3-primary cluster) mid-stream and restarts it empty. Direct applies then hit the restarted store
before the outbox notices. At the end every event must be in the trending counters exactly once
(an item's score is its event's weight times the times it was applied), and the trending and KOL
affinity totals must equal the sum of the weights; re-sending the whole log changes nothing. The
stream lives in kolfeed/bench/restart_count.py, which ``kolfeed bench ingest`` runs to record the
same counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kolfeed.bench.restart_count import RestartCount, RestartParams, redis_cluster, single_redis

pytestmark = pytest.mark.slow


def check(out: RestartCount) -> None:
    assert (out.double_counted, out.lost, out.applied_once) == (0, 0, out.events), out
    assert out.trending_total == pytest.approx(out.trending_expected, rel=1e-9)
    assert out.affinity_total == pytest.approx(out.affinity_expected, rel=1e-9)
    assert out.double_counted_after_resend == 0 and out.pending_at_end == 0
    assert out.rebuilds >= 2  # the new log, then the restarted store


async def test_a_redis_restart_mid_stream_counts_every_event_exactly_once(tmp_path: Path) -> None:
    check(await single_redis(tmp_path))


async def test_a_cluster_primary_restart_mid_stream_counts_every_event_exactly_once(tmp_path: Path) -> None:
    check(await redis_cluster(tmp_path))


async def test_the_count_sees_an_event_applied_twice(tmp_path: Path) -> None:
    """The figure can fail: the same stream with the position check switched off (plain
    record_events, no log id) does count events twice after a re-send."""
    from features.eventlog import EventLog
    from features.memory import MemoryStore
    from features.replay import Replayer, log_and_apply
    from kolfeed.bench.restart_count import applied_counts, stream

    events = stream(RestartParams(events=20))
    store = MemoryStore()
    with EventLog(tmp_path / "log") as event_log:
        replayer = Replayer(event_log, fsync=False)  # no log id: not exactly once
        for ev in events:
            await log_and_apply(event_log, replayer, store, [ev])
        assert await applied_counts(store, events) == [1] * 20
        await replayer.reset(0)
        await replayer.replay_pending(store)
        assert await applied_counts(store, events) == [2] * 20

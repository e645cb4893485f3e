"""Chaos scenarios against the real service: Redis killed mid-load, the service SIGKILLed mid-ingest,
and overload at 3x capacity. Used by ``kolfeed bench chaos`` (large counts) and by the reliability
tests (small counts); each scenario returns plain numbers, checked by the caller.

- outage: load of feed requests + event batches; the private Redis is SIGKILLed and restarted empty
  mid-load. Every feed request must get an answer (degraded allowed); after recovery the store must
  hold every acknowledged event (counted per event: impression -> ``seen``, buy -> ``bought``).
- sigkill: writers post event batches; the service is SIGKILLed; after a restart every acknowledged
  event is in the log at the sequence number its acknowledgement gave.
- overload: capacity fixed by a slow ranker (``max_inflight / delay``); first the sustainable rate is
  measured closed-loop, then requests are offered open-loop at 3x it: accepted requests keep a
  bounded latency, the excess gets a fast 503, nothing times out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kolfeed.bench.harness import RawClient, RedisServer, Reply, ServiceConfig, ServiceProcess, kill_after

if TYPE_CHECKING:
    from features.base import FeatureStore

USER_BASE = 5_000_000
ITEM_BASE = 7_000_000
EVENTS_PER_USER = 20
"""Distinct items per synthetic user (far below the store's per-user bounds, so nothing is trimmed)."""
WARMUP_REQUESTS = 20
"""Feed requests sent (and not counted) before the outage load starts."""


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
    }


def make_batch(index: int, size: int, n_users: int) -> list[dict[str, Any]]:
    """Batch ``index``: events with globally unique items; even events are impressions, odd ones buys."""
    out = []
    for k in range(size):
        n = index * size + k
        out.append(
            {
                "user_id": USER_BASE + n % n_users,
                "item_id": ITEM_BASE + n,
                "action": "impression" if n % 2 == 0 else "buy",
            }
        )
    return out


async def events_in_store(store: FeatureStore, events: list[dict[str, Any]]) -> int:
    """How many of ``events`` (:func:`make_batch`'s) ``store`` holds: an impression's item among its
    user's seen items, a buy's among the bought ones. Closes ``store``."""
    try:
        users = sorted({ev["user_id"] for ev in events})
        states = dict(zip(users, await store.user_states(users), strict=True)) if users else {}
    finally:
        await store.close()
    return sum(
        1
        for ev in events
        if ev["item_id"]
        in (states[ev["user_id"]].seen if ev["action"] == "impression" else states[ev["user_id"]].bought)
    )


async def run_open_loop(
    schedule: list[tuple[float, str, int]], fire: Callable[[str, int], Coroutine[Any, Any, None]]
) -> None:
    t0 = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for offset, kind, index in schedule:
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(kind, index)))
    await asyncio.gather(*tasks)


# ------------------------------------------------------------------ outage
@dataclass
class OutageParams:
    feed_requests: int = 300
    event_batches: int = 100
    events_per_batch: int = 5
    duration_s: float = 4.0
    kill_at_s: float = 1.2
    down_s: float = 1.2
    recovery_timeout_s: float = 30.0


async def _outage(run_dir: Path, work: Path, p: OutageParams, ranking_dir: Path | None) -> dict[str, Any]:
    from features.eventlog import LogReader
    from features.factory import open_store

    n_events = p.event_batches * p.events_per_batch
    n_users = max(1, n_events // EVENTS_PER_USER)
    redis = RedisServer(log_path=work / "redis.log")
    await asyncio.to_thread(redis.start)
    cfg = ServiceConfig(
        run_dir=run_dir,
        store_url=redis.url(),
        event_log_dir=work / "eventlog",
        ranking_dir=ranking_dir,
        env={
            "KOLFEED_REPLAY_INTERVAL_S": "0.2",
            "KOLFEED_MAX_INFLIGHT": "256",
            "KOLFEED_MAX_WAITING": "4096",
        },
        log_path=work / "service.log",
    )
    svc = ServiceProcess(cfg)
    feed: list[tuple[float, Reply, bool]] = []
    acks: list[tuple[int, Reply]] = []
    marks: dict[str, float] = {}
    try:
        await asyncio.to_thread(svc.start)
        client = RawClient(svc.port, timeout_s=10.0, max_connections=256)
        for i in range(WARMUP_REQUESTS):  # cold start (connections, first ANN search) is not the outage
            await client.request("GET", f"/v1/feed?user_id={USER_BASE + i}&limit=10")
        t_start = time.perf_counter()

        async def fire(kind: str, i: int) -> None:
            at = time.perf_counter() - t_start
            if kind == "feed":
                r = await client.request("GET", f"/v1/feed?user_id={USER_BASE + i % n_users}&limit=10")
                degraded = r.status == 200 and bool(r.json().get("degraded"))
                feed.append((at, r, degraded))
            else:
                batch = make_batch(i, p.events_per_batch, n_users)
                acks.append((i, await client.request("POST", "/v1/events", {"events": batch})))

        async def chaos() -> None:
            await asyncio.sleep(p.kill_at_s)
            marks["redis_killed_s"] = time.perf_counter() - t_start
            await asyncio.to_thread(redis.kill)
            await asyncio.sleep(p.down_s)
            await asyncio.to_thread(redis.start)
            marks["redis_restarted_s"] = time.perf_counter() - t_start

        schedule = [(p.duration_s * i / p.feed_requests, "feed", i) for i in range(p.feed_requests)]
        schedule += [(p.duration_s * i / p.event_batches, "events", i) for i in range(p.event_batches)]
        schedule.sort()
        await asyncio.gather(run_open_loop(schedule, fire), chaos())
        load_done = time.perf_counter() - t_start

        # recovery: the outbox notices the empty Redis, rebuilds it from the log, and catches up
        ready: dict[str, Any] = {}
        deadline = time.perf_counter() + p.recovery_timeout_s
        while time.perf_counter() < deadline:
            r = await client.request("GET", "/readyz")
            if r.status in (200, 503) and r.body:
                ready = r.json()
                status = ready.get("event_log") or {}
                if r.status == 200 and status.get("pending") == 0 and status.get("store_synced"):
                    break
            await asyncio.sleep(0.1)
        recovered_s = time.perf_counter() - t_start
        await client.close()

        acked = [(i, r) for i, r in acks if r.status == 202]
        acked_events = [ev for i, _ in acked for ev in make_batch(i, p.events_per_batch, n_users)]
        recovered = await events_in_store(open_store(redis.url()), acked_events)
    finally:
        await asyncio.to_thread(svc.stop)
        await asyncio.to_thread(redis.kill)
    in_log = LogReader(cfg.event_log_dir).count()
    answered = [r for _, r, _ in feed if r.status == 200]
    return {
        "feed": {
            "sent": len(feed),
            "answered": len(answered),
            "degraded": sum(1 for _, _, d in feed if d),
            "errors": sum(1 for _, r, _ in feed if r.status != 200),
            "client_timeouts": sum(1 for _, r, _ in feed if r.status == -1),
            "statuses": _count_statuses(r for _, r, _ in feed),
            "latency": percentiles([r.latency_s for r in answered]),
        },
        "events": {
            "batches_sent": len(acks),
            "batches_acknowledged": len(acked),
            "acknowledged": len(acked_events),
            "recovered_in_store": recovered,
            "in_log": in_log,
            "statuses": _count_statuses(r for _, r in acks),
            "latency": percentiles([r.latency_s for _, r in acked]),
            "applied_directly": sum(1 for _, r in acked if r.json().get("applied_to_store")),
        },
        "readyz_after": ready,
        "timeline_s": {**marks, "load_done_s": round(load_done, 3), "recovered_s": round(recovered_s, 3)},
        "feed_points": [(round(at, 4), round(r.latency_s * 1000, 3), r.status, d) for at, r, d in feed],
    }


def _count_statuses(replies: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replies:
        key = {0: "connection_error", -1: "client_timeout"}.get(r.status, str(r.status))
        out[key] = out.get(key, 0) + 1
    return out


def outage_scenario(
    run_dir: Path, work: Path, params: OutageParams | None = None, ranking_dir: Path | None = None
) -> dict[str, Any]:
    return asyncio.run(_outage(run_dir, work, params or OutageParams(), ranking_dir))


# ------------------------------------------------------------------ SIGKILL during ingestion
@dataclass
class KillParams:
    writers: int = 8
    events_per_batch: int = 5
    kill_after_s: float = 1.0


async def _sigkill(run_dir: Path, work: Path, p: KillParams, ranking_dir: Path | None) -> dict[str, Any]:
    from features.eventlog import LogReader

    cfg = ServiceConfig(
        run_dir=run_dir,
        store_url="memory://",
        event_log_dir=work / "eventlog",
        ranking_dir=ranking_dir,
        log_path=work / "service.log",
    )
    svc = ServiceProcess(cfg)
    acks: list[tuple[int, Reply]] = []
    counter = iter(range(10**9))
    n_users = 1000
    try:
        await asyncio.to_thread(svc.start)
        client = RawClient(svc.port, timeout_s=10.0)
        stop = asyncio.Event()

        async def writer() -> None:
            while not stop.is_set():
                i = next(counter)
                r = await client.request(
                    "POST", "/v1/events", {"events": make_batch(i, p.events_per_batch, n_users)}
                )
                acks.append((i, r))
                if r.status in (0, -1):
                    return  # the service is gone

        await asyncio.gather(kill_after(svc, p.kill_after_s, stop), *(writer() for _ in range(p.writers)))
        await client.close()
        await asyncio.to_thread(svc.start)  # restart on the same log: recovers a torn tail, if any
        client = RawClient(svc.port, timeout_s=10.0)
        ready = (await client.request("GET", "/readyz")).json()
        await client.close()
    finally:
        await asyncio.to_thread(svc.stop)
    logged = {
        seq: (ev.user_id, ev.item_id, ev.action) for seq, ev in LogReader(cfg.event_log_dir).iter_events()
    }
    acked = [(i, r) for i, r in acks if r.status == 202]
    found = 0
    n_acked = 0
    for i, r in acked:
        body = r.json()
        batch = make_batch(i, p.events_per_batch, n_users)
        for k, ev in enumerate(batch):
            n_acked += 1
            if logged.get(body["first_seq"] + k) == (ev["user_id"], ev["item_id"], ev["action"]):
                found += 1
    return {
        "batches_sent": len(acks),
        "batches_acknowledged": len(acked),
        "acknowledged": n_acked,
        "in_log_at_acked_seq": found,
        "log_total": len(logged),
        "unacknowledged_but_logged": len(logged) - n_acked,
        "statuses": _count_statuses(r for _, r in acks),
        "readyz_after_restart": ready,
    }


def sigkill_scenario(
    run_dir: Path, work: Path, params: KillParams | None = None, ranking_dir: Path | None = None
) -> dict[str, Any]:
    return asyncio.run(_sigkill(run_dir, work, params or KillParams(), ranking_dir))


# ------------------------------------------------------------------ overload
@dataclass
class OverloadParams:
    max_inflight: int = 4
    rank_delay_s: float = 0.02
    max_queue_wait_s: float = 0.05
    max_waiting: int = 16
    measure_s: float = 2.0
    overload_s: float = 3.0
    factor: float = 3.0
    client_timeout_s: float = 10.0


async def _overload(run_dir: Path, work: Path, p: OverloadParams, ranking_dir: Path | None) -> dict[str, Any]:
    cfg = ServiceConfig(
        run_dir=run_dir,
        store_url="memory://",
        event_log_dir=work / "eventlog",
        ranking_dir=ranking_dir,
        env={
            "KOLFEED_MAX_INFLIGHT": str(p.max_inflight),
            "KOLFEED_MAX_QUEUE_WAIT_S": str(p.max_queue_wait_s),
            "KOLFEED_MAX_WAITING": str(p.max_waiting),
            "KOLFEED_REQUEST_TIMEOUT_S": "5",
        },
        rank_delay_s=p.rank_delay_s,
        log_path=work / "service.log",
    )
    svc = ServiceProcess(cfg)
    try:
        await asyncio.to_thread(svc.start)
        client = RawClient(svc.port, timeout_s=p.client_timeout_s, max_connections=1024)
        # 1) sustainable rate: closed loop, as many workers as slots
        done: list[Reply] = []
        t_end = time.perf_counter() + p.measure_s

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < t_end:
                done.append(await client.request("GET", f"/v1/feed?user_id={w * 1000 + n}&limit=10"))
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(p.max_inflight)))
        ok = [r for r in done if r.status == 200]
        sustainable = len(ok) / (time.perf_counter() - t0)
        # 2) open loop at factor x the sustainable rate
        rate = sustainable * p.factor
        n = max(1, int(rate * p.overload_s))
        replies: list[Reply] = []

        async def fire(kind: str, i: int) -> None:
            replies.append(await client.request("GET", f"/v1/feed?user_id={i}&limit=10"))

        t1 = time.perf_counter()
        await run_open_loop([(i / rate, "feed", i) for i in range(n)], fire)
        wall = time.perf_counter() - t1
        await client.close()
    finally:
        await asyncio.to_thread(svc.stop)
    accepted = [r for r in replies if r.status == 200]
    shed = [r for r in replies if r.status == 503]
    return {
        "max_inflight": p.max_inflight,
        "rank_delay_ms": p.rank_delay_s * 1000,
        "max_queue_wait_ms": p.max_queue_wait_s * 1000,
        "sustainable_rps": round(sustainable, 1),
        "closed_loop_latency": percentiles([r.latency_s for r in ok]),
        "offered_rps": round(rate, 1),
        "sent": len(replies),
        "accepted": len(accepted),
        "accepted_rps": round(len(accepted) / wall, 1),
        "rejected_503": len(shed),
        "rejected_with_retry_after": sum(1 for r in shed if "retry-after" in r.headers),
        "client_timeouts": sum(1 for r in replies if r.status == -1),
        "other_errors": sum(1 for r in replies if r.status not in (200, 503, -1)),
        "accepted_latency": percentiles([r.latency_s for r in accepted]),
        "rejected_latency": percentiles([r.latency_s for r in shed]),
    }


def overload_scenario(
    run_dir: Path, work: Path, params: OverloadParams | None = None, ranking_dir: Path | None = None
) -> dict[str, Any]:
    return asyncio.run(_overload(run_dir, work, params or OverloadParams(), ranking_dir))


# ------------------------------------------------------------------ the benchmark report
def build_run(work: Path) -> Path:
    """A small trained run for the service (world tiny + graph filter), made with the real CLI."""
    import subprocess
    import sys

    from kolfeed.bench.harness import REPO

    world, runs = work / "world", work / "runs"
    kolfeed = [sys.executable, "-m", "kolfeed.cli"]
    subprocess.run(
        [*kolfeed, "world", "--scale", "tiny", "--seed", "7", "--out", str(world)], check=True, cwd=REPO
    )
    config = REPO / "configs" / "train" / "world_graphfilter.yaml"
    subprocess.run(
        [*kolfeed, "train", str(config), "--set", f"data.path={world}", "--out", str(runs)],
        check=True,
        cwd=REPO,
    )
    return max(p for p in runs.iterdir() if p.is_dir())


def run_all(
    run_dir: Path | None,
    results_dir: Path,
    outage: OutageParams,
    kill: KillParams,
    overload: OverloadParams,
) -> dict[str, Any]:
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="kolfeed-chaos-"))
    try:
        run = run_dir if run_dir is not None else build_run(work / "build")
        parts: dict[str, dict[str, Any]] = {}
        for name in ("outage", "sigkill", "overload"):
            (work / name).mkdir()
        parts["outage"] = outage_scenario(run, work / "outage", outage)
        parts["sigkill"] = sigkill_scenario(run, work / "sigkill", kill)
        parts["overload"] = overload_scenario(run, work / "overload", overload)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    points = parts["outage"].pop("feed_points")
    result = {
        "benchmark": "chaos",
        "run": str(run_dir)
        if run_dir is not None
        else "world tiny seed 7 + world_graphfilter (built for the run)",
        "params": {
            "outage": outage.__dict__,
            "sigkill": kill.__dict__,
            "overload": overload.__dict__,
        },
        **parts,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, points, results_dir / "chaos.png")
    return result


def _plot(result: dict[str, Any], points: list[tuple[float, float, int, bool]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    for degraded, color, label in ((False, "tab:blue", "personalised"), (True, "tab:orange", "degraded")):
        xs = [p[0] for p in points if p[3] == degraded and p[2] == 200]
        ys = [p[1] for p in points if p[3] == degraded and p[2] == 200]
        ax.scatter(xs, ys, s=4, color=color, label=label)
    bad = [p for p in points if p[2] != 200]
    if bad:
        ax.scatter([p[0] for p in bad], [p[1] for p in bad], s=12, color="red", marker="x", label="error")
    tl = result["outage"]["timeline_s"]
    for key, style in (("redis_killed_s", "--"), ("redis_restarted_s", ":")):
        if key in tl:
            ax.axvline(tl[key], color="black", linestyle=style, label=key.replace("_s", "").replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel("time since load start (s)")
    ax.set_ylabel("feed latency (ms)")
    ax.set_title("Redis killed + restarted empty mid-load")
    ax.legend(fontsize=8)

    ax = axes[1]
    o, k = result["outage"]["events"], result["sigkill"]
    labels = [
        "outage:\nacknowledged",
        "outage:\nin store after",
        "sigkill:\nacknowledged",
        "sigkill:\nin log after",
    ]
    values = [o["acknowledged"], o["recovered_in_store"], k["acknowledged"], k["in_log_at_acked_seq"]]
    ax.bar(labels, values, color=["tab:gray", "tab:green", "tab:gray", "tab:green"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("events")
    ax.set_title("acknowledged events vs recovered")

    ax = axes[2]
    ov = result["overload"]
    names = ["accepted p50", "accepted p99", "503 p50", "503 p99"]
    vals = [
        ov["accepted_latency"]["p50_ms"],
        ov["accepted_latency"]["p99_ms"],
        ov["rejected_latency"]["p50_ms"],
        ov["rejected_latency"]["p99_ms"],
    ]
    ax.bar(names, [v or 0 for v in vals], color=["tab:blue", "tab:blue", "tab:red", "tab:red"])
    ax.set_ylabel("latency (ms)")
    ax.set_title(
        f"overload {ov['offered_rps']:.0f} req/s offered (3x {ov['sustainable_rps']:.0f}):\n"
        f"{ov['accepted']} accepted, {ov['rejected_503']} x 503, {ov['client_timeouts']} timeouts"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``kolfeed bench cluster``: two replicas on a 3-primary Redis Cluster, then one of each killed.

What it measures, on loopback only and bounded in time:

1. *baseline*: one replica on one redis-server, closed-loop feed load + a fixed event rate: the
   same figures as the cluster's steady phase, so the cost of the cluster store per feed is a ratio
   measured side by side in one run;
2. *cluster*: two ``kolfeed serve`` replicas (one worker each, own event logs) on a 3-primary
   Redis Cluster, behind a client-side round-robin balancer that retries a request on the other
   replica when a connection fails (what a load balancer does). Phases: ``steady``; ``replica
   killed`` (SIGKILL of replica B); ``primary killed`` (SIGKILL of one primary, no persistence).
   Afterwards the primary and replica B are restarted, every acknowledged event is looked up in
   the store (impression -> seen, buy -> bought) and in the logs: acknowledged events lost must be 0.

Per phase: feeds/s answered, p50/p99, degraded share, errors; CPU-ms per feed of the replicas
(utime+stime from /proc over the phase / feeds answered) and of Redis; acknowledged events/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kolfeed.bench.chaos import build_run, events_in_store, make_batch, percentiles
from kolfeed.bench.harness import RawClient, RedisServer, Reply, ServiceConfig, ServiceProcess
from kolfeed.bench.local_cluster import LocalRedisCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENT_USERS = 2_000
"""Synthetic users the event batches are spread over (chaos.make_batch: unique items per event)."""
RETRY_DOWN_S = 1.0
"""A replica whose connection failed is skipped by the balancer for this long."""


@dataclass
class ClusterBenchParams:
    concurrency: int = 8
    """Closed-loop feed clients (each sends its next request when the last one is answered)."""
    event_batches_per_s: float = 20.0
    events_per_batch: int = 10
    warmup_s: float = 3.0
    steady_s: float = 10.0
    replica_down_s: float = 8.0
    primary_down_s: float = 8.0
    feed_limit: int = 20
    recovery_timeout_s: float = 60.0


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of live processes (a dead one counts 0 from then on)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


@dataclass
class Balancer:
    """Round-robin over replicas; a request that cannot reach one is retried once on the next."""

    clients: list[RawClient]
    down_until: list[float] = field(default_factory=list)
    turn: int = 0
    retried: int = 0

    def __post_init__(self) -> None:
        self.down_until = [0.0] * len(self.clients)

    async def request(self, method: str, path: str, payload: Any = None) -> Reply:
        reply = Reply(0, 0.0)
        for _attempt in range(2):
            now = time.monotonic()
            live = [i for i in range(len(self.clients)) if self.down_until[i] <= now] or [0]
            index = live[self.turn % len(live)]
            self.turn += 1
            reply = await self.clients[index].request(method, path, payload)
            if reply.status != 0:
                return reply
            self.down_until[index] = time.monotonic() + RETRY_DOWN_S
            self.retried += 1
        return reply

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


@dataclass
class Recorder:
    t0: float
    feeds: list[tuple[float, float, int, bool, int]] = field(default_factory=list)
    """(at_s, latency_ms, status, degraded, user)"""
    acks: list[tuple[int, float, Reply]] = field(default_factory=list)
    """(batch index, sent at_s, reply)"""
    marks: dict[str, float] = field(default_factory=dict)

    def at(self) -> float:
        return time.perf_counter() - self.t0


async def drive(
    lb: Balancer,
    users: np.ndarray,
    p: ClusterBenchParams,
    phases: list[tuple[str, float, Callable[[], None] | None]],
    cpu_pids: Callable[[], dict[str, list[int]]],
    victim_users: frozenset[int] = frozenset(),
) -> tuple[Recorder, list[dict[str, Any]]]:
    """Run the load through ``phases`` (name, seconds, action at its start) and measure each;
    ``victim_users``: users whose keys live on the primary that gets killed."""
    rec = Recorder(time.perf_counter())
    stop = asyncio.Event()
    rng = np.random.default_rng(11)

    async def feeder() -> None:
        while not stop.is_set():
            user = int(users[rng.integers(len(users))])
            at = rec.at()
            r = await lb.request("GET", f"/v1/feed?user_id={user}&limit={p.feed_limit}")
            degraded = r.status == 200 and bool(r.json().get("degraded"))
            rec.feeds.append((at, r.latency_s * 1000, r.status, degraded, user))

    async def writer() -> None:
        i = 0
        due = time.perf_counter()
        while not stop.is_set():
            # paced, without catching up: a slow phase must not make the next one a burst
            due = max(due + 1 / p.event_batches_per_s, time.perf_counter())
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            batch = make_batch(i, p.events_per_batch, EVENT_USERS)
            at = rec.at()
            rec.acks.append((i, at, await lb.request("POST", "/v1/events", {"events": batch})))
            i += 1

    tasks = [asyncio.create_task(feeder()) for _ in range(p.concurrency)]
    tasks.append(asyncio.create_task(writer()))
    stats: list[dict[str, Any]] = []
    for name, seconds, action in phases:
        if action is not None:
            await asyncio.to_thread(action)
            rec.marks[name] = rec.at()
        pids = cpu_pids()
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        begin = rec.at()
        await asyncio.sleep(seconds)
        end = rec.at()
        cpu1 = {k: cpu_seconds(v) for k, v in pids.items()}
        cpu = {k: cpu1[k] - cpu0[k] for k in pids}
        stats.append(phase_stats(name, rec, begin, end, cpu, p.events_per_batch, victim_users))
    stop.set()
    await asyncio.gather(*tasks)
    return rec, stats


def phase_stats(
    name: str,
    rec: Recorder,
    begin: float,
    end: float,
    cpu_s: dict[str, float],
    per_batch: int,
    victim_users: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    rows = [f for f in rec.feeds if begin <= f[0] < end]
    ok = [f for f in rows if f[2] == 200]
    acked = sum(1 for _, at, r in rec.acks if r.status == 202 and begin <= at < end)
    seconds = end - begin
    out: dict[str, Any] = {
        "phase": name,
        "seconds": round(seconds, 2),
        "feeds_sent": len(rows),
        "feeds_answered": len(ok),
        "feeds_per_s": round(len(ok) / seconds, 1),
        "degraded": sum(1 for f in ok if f[3]),
        "errors": len(rows) - len(ok),
        "latency": percentiles([f[1] / 1000 for f in ok]),
        "events_acknowledged_per_s": round(acked * per_batch / seconds, 1),
    }
    if victim_users:  # pages of users on the primary that gets killed vs everyone else's
        mine = [f for f in ok if f[4] in victim_users]
        others = [f for f in ok if f[4] not in victim_users]
        out["victim_shard_users"] = {"answered": len(mine), "degraded": sum(1 for f in mine if f[3])}
        out["other_users"] = {"answered": len(others), "degraded": sum(1 for f in others if f[3])}
    for who, spent in cpu_s.items():
        out[f"{who}_cpu_ms_per_feed"] = round(spent * 1000 / max(len(ok), 1), 3)
    return out


def user_sample(run_dir: Path, n: int = 5_000) -> np.ndarray:
    from recsys import artifacts as A

    ids = A.load_array(run_dir / A.USER_IDS)
    return np.asarray(ids[:n], dtype=np.int64)


async def _baseline(run_dir: Path, work: Path, p: ClusterBenchParams) -> dict[str, Any]:
    redis = RedisServer(log_path=work / "redis.log")
    await asyncio.to_thread(redis.start)
    svc = ServiceProcess(_config(run_dir, redis.url(), work / "eventlog", work / "service.log"))
    try:
        await asyncio.to_thread(svc.start)
        assert svc.proc is not None and redis.proc is not None
        lb = Balancer([RawClient(svc.port, timeout_s=10.0)])
        pids = {"replicas": [svc.proc.pid], "redis": [redis.proc.pid]}
        _, stats = await drive(
            lb,
            user_sample(run_dir),
            p,
            [("warmup", p.warmup_s, None), ("steady", p.steady_s, None)],
            lambda: pids,
        )
        await lb.close()
    finally:
        await asyncio.to_thread(svc.stop)
        await asyncio.to_thread(redis.kill)
    return stats[1]


def _config(run_dir: Path, store_url: str, log_dir: Path, log_path: Path) -> ServiceConfig:
    return ServiceConfig(
        run_dir=run_dir,
        store_url=store_url,
        event_log_dir=log_dir,
        env={
            "KOLFEED_REPLAY_INTERVAL_S": "0.2",
            "KOLFEED_MAX_INFLIGHT": "256",
            "KOLFEED_MAX_WAITING": "4096",
        },
        log_path=log_path,
    )


async def _cluster(run_dir: Path, work: Path, p: ClusterBenchParams) -> dict[str, Any]:
    from features.eventlog import LogReader
    from features.factory import open_store

    cluster = await asyncio.to_thread(LocalRedisCluster.start, work / "redis-cluster")
    url = cluster.url + "?socket_timeout=0.5&socket_connect_timeout=0.5"
    replicas = [
        ServiceProcess(_config(run_dir, url, work / f"replica{i}" / "eventlog", work / f"replica{i}.log"))
        for i in range(2)
    ]
    victim_primary = 1
    try:
        for r in replicas:
            await asyncio.to_thread(r.start)
        lb = Balancer([RawClient(r.port, timeout_s=10.0) for r in replicas])

        def pids() -> dict[str, list[int]]:
            return {
                "replicas": [r.proc.pid for r in replicas if r.proc is not None and r.proc.poll() is None],
                "redis": list(cluster.pids.values()),
            }

        def kill_primary() -> None:
            cluster.kill(victim_primary)

        phases: list[tuple[str, float, Callable[[], None] | None]] = [
            ("warmup", p.warmup_s, None),
            ("steady", p.steady_s, None),
            ("replica killed", p.replica_down_s, replicas[1].kill),
            ("primary killed", p.primary_down_s, kill_primary),
        ]
        users = user_sample(run_dir)
        victims = await _users_on_node(cluster.url, users, cluster.ports[victim_primary])
        rec, stats = await drive(lb, users, p, phases, pids, victims)
        retried = lb.retried
        await lb.close()

        # recovery: the primary comes back empty, replica B comes back; both outboxes catch up
        await asyncio.to_thread(cluster.restart, victim_primary)
        await asyncio.to_thread(replicas[1].start)
        recovered_s = await _wait_synced(replicas, p.recovery_timeout_s)

        acked = [(i, r) for i, _, r in rec.acks if r.status == 202]
        events = [ev for i, _ in acked for ev in make_batch(i, p.events_per_batch, EVENT_USERS)]
        store = open_store(cluster.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        in_store = await events_in_store(store, events)
    finally:
        for r in replicas:
            await asyncio.to_thread(r.stop)
        await asyncio.to_thread(cluster.stop)
    logged = sum(LogReader(work / f"replica{i}" / "eventlog").count() for i in range(2))
    duration = sum(s["seconds"] for s in stats[1:])
    return {
        "phases": stats[1:],
        "events": {
            "batches_sent": len(rec.acks),
            "batches_acknowledged": len(acked),
            "acknowledged": len(events),
            "acknowledged_per_s": round(len(events) / duration, 1),
            "in_store_after_recovery": in_store,
            "in_logs": logged,
            "lost": len(events) - in_store,
            "statuses": _statuses(r for _, _, r in rec.acks),
        },
        "balancer_retries": retried,
        "recovered_after_s": recovered_s,
        "timeline_s": {k: round(v, 2) for k, v in rec.marks.items()},
        "feed_points": [(round(a, 3), round(lat, 2), s, d) for a, lat, s, d, _ in rec.feeds],
    }


async def _users_on_node(url: str, users: np.ndarray, port: int) -> frozenset[int]:
    """The users whose keys the primary on ``port`` serves (the layout hash-tags keys per user)."""
    from features.factory import open_store
    from features.redis_cluster_store import RedisClusterStore

    store = open_store(url)
    assert isinstance(store, RedisClusterStore)
    try:
        client = await store._initialized()
        nodes = {int(u): client.get_node_from_key(store._bought_key(int(u))) for u in users}
        return frozenset(u for u, node in nodes.items() if node is not None and int(node.port) == port)
    finally:
        await store.close()


def _statuses(replies: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replies:
        key = {0: "connection_error", -1: "client_timeout"}.get(r.status, str(r.status))
        out[key] = out.get(key, 0) + 1
    return out


async def _wait_synced(replicas: list[ServiceProcess], timeout_s: float) -> float | None:
    """Seconds until every replica's outbox reports nothing pending (None: not within timeout)."""
    t0 = time.perf_counter()
    clients = [RawClient(r.port, timeout_s=5.0) for r in replicas]
    try:
        while time.perf_counter() - t0 < timeout_s:
            done = 0
            for c in clients:
                r = await c.request("GET", "/readyz")
                status = (r.json().get("event_log") or {}) if r.body else {}
                if r.status == 200 and status.get("pending") == 0 and status.get("store_synced"):
                    done += 1
            if done == len(clients):
                return round(time.perf_counter() - t0, 2)
            await asyncio.sleep(0.2)
    finally:
        for c in clients:
            await c.close()
    return None


def run_cluster_bench(run_dir: Path | None, results_dir: Path, p: ClusterBenchParams) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="kolfeed-bench-cluster-"))
    try:
        run = run_dir if run_dir is not None else build_run(work / "build")
        (work / "baseline").mkdir()
        (work / "cluster").mkdir()
        load_before = os.getloadavg()
        baseline = asyncio.run(_baseline(run, work / "baseline", p))
        cluster = asyncio.run(_cluster(run, work / "cluster", p))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    points = cluster.pop("feed_points")
    steady = cluster["phases"][0]
    result = {
        "benchmark": "cluster",
        "run": str(run_dir)
        if run_dir is not None
        else "world tiny seed 7 + world_graphfilter (built for the run)",
        "params": asdict(p),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "baseline_single_redis_one_replica": baseline,
        "cluster_two_replicas": cluster,
        "ratios": {
            "replica_cpu_ms_per_feed_cluster_vs_single": _ratio(
                steady["replicas_cpu_ms_per_feed"], baseline["replicas_cpu_ms_per_feed"]
            ),
            "redis_cpu_ms_per_feed_cluster_vs_single": _ratio(
                steady["redis_cpu_ms_per_feed"], baseline["redis_cpu_ms_per_feed"]
            ),
            "feeds_per_s_cluster_vs_single": _ratio(steady["feeds_per_s"], baseline["feeds_per_s"]),
        },
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, points, results_dir / "cluster.png")
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _plot(result: dict[str, Any], points: list[tuple[float, float, int, bool]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    ax = axes[0]
    for degraded, color, label in ((False, "tab:blue", "personalised"), (True, "tab:orange", "degraded")):
        sel = [pt for pt in points if pt[3] == degraded and pt[2] == 200]
        ax.scatter([pt[0] for pt in sel], [pt[1] for pt in sel], s=3, color=color, label=label)
    bad = [pt for pt in points if pt[2] != 200]
    if bad:
        ax.scatter([pt[0] for pt in bad], [pt[1] for pt in bad], s=12, color="red", marker="x", label="error")
    for name, at in result["cluster_two_replicas"]["timeline_s"].items():
        ax.axvline(at, color="black", linestyle="--")
        ax.text(at, ax.get_ylim()[1] if ax.get_ylim()[1] > 0 else 1, f" {name}", fontsize=8, va="top")
    ax.set_yscale("log")
    ax.set_xlabel("time since load start (s)")
    ax.set_ylabel("feed latency (ms)")
    ax.set_title("2 replicas x 1 worker, 3-primary Redis Cluster")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    phases = [result["baseline_single_redis_one_replica"], *result["cluster_two_replicas"]["phases"]]
    names = ["1 replica,\n1 Redis", *[ph["phase"].replace(" ", "\n") for ph in phases[1:]]]
    rates = [ph["feeds_per_s"] for ph in phases]
    shares = [ph["degraded"] / max(ph["feeds_answered"], 1) * 100 for ph in phases]
    bars = ax.bar(names, rates, color=["tab:gray", "tab:blue", "tab:purple", "tab:orange"][: len(names)])
    for bar, ph, share in zip(bars, phases, shares, strict=True):
        cpu = ph["replicas_cpu_ms_per_feed"]
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"p99 {ph['latency']['p99_ms']} ms\n{share:.0f}% degraded\n{cpu} CPU-ms",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ev = result["cluster_two_replicas"]["events"]
    ax.set_ylabel("feeds answered per second")
    ax.set_title(f"events acknowledged {ev['acknowledged']:,}, lost {ev['lost']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

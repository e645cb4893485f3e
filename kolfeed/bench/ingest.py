"""`kolfeed bench ingest`: acknowledged single-event POSTs per second of this checkout and of older
commits, side by side in one run, what a SIGKILL under that load leaves (nothing acknowledged
lost), and how many events a Redis restart mid-stream makes the store count twice.

Why this shape: the event log fsyncs before every 202, so ingestion throughput is bounded by how
many requests share an fsync. The load is Debian's ``hey`` (``-n 6000 -c 32`` posting a one-event
batch: hey sends ``n // c * c`` = 5,984 requests), against ``kolfeed serve`` on a small run with the
embedded store. Baselines are the same service built from older commits (``--baseline-ref``, each
checked out into a temporary git worktree), so all are measured on the same machine under the same
load, in alternating rounds. Besides req/s (machine-dependent) it reports the server's CPU-ms per
acknowledged request (from /proc) and its ratio to each baseline of the same run.

The SIGKILL check: 32 clients post single events with unique item ids against this checkout's
service; it is SIGKILLed mid-stream; every acknowledged event must then be in the log at the
sequence number its 202 named, and in the export (``kolfeed events export``) exactly once.

The restart count (:mod:`kolfeed.bench.restart_count`): a logged stream applied to a private Redis,
then to a 3-primary Redis Cluster, that is SIGKILLed mid-stream and restarted empty; per event, how
many times the store's counters hold it (double-counted and lost must be 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kolfeed.bench.harness import REPO, HarnessError, RawClient, ServiceConfig, ServiceProcess, kill_after

BODY = {"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]}


CURRENT = "current"
"""The label of this checkout's rounds."""


@dataclass(frozen=True)
class IngestParams:
    requests: int = 6000
    concurrency: int = 32
    rounds: int = 2
    """Alternating baseline/current rounds; medians are reported."""
    warmup: int = 320
    kill_after_s: float = 2.0
    baseline_refs: tuple[str, ...] = ()
    """Older commits measured side by side (oldest first)."""
    workers: int = 1
    """``kolfeed serve --workers``; > 1 serves with a private redis-server as the shared store."""
    restart_count: bool = True
    """Also run the Redis / Redis Cluster restart count (needs redis-server and redis-cli)."""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (``--workers``) from /proc."""
    from kolfeed.bench.serve import tree_status

    return float(tree_status(pid)["cpu_s"])


def parse_hey(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles and status counts from hey's text summary."""
    out: dict[str, Any] = {"statuses": {}, "latency_ms": {}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m is None:
        raise HarnessError(f"hey printed no summary:\n{text[-2000:]}")
    out["requests_per_s"] = float(m.group(1))
    m = re.search(r"Total:\s+([\d.]+) secs", text)
    out["wall_s"] = float(m.group(1)) if m else None
    for pct, secs in re.findall(r"(\d+)% in ([\d.]+) secs", text):
        out["latency_ms"][f"p{pct}"] = round(float(secs) * 1000, 2)
    for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text):
        out["statuses"][code] = int(n)
    errors = re.search(r"Error distribution:(.*)", text, flags=re.S)
    out["errors"] = errors.group(1).strip()[:500] if errors else ""
    return out


def _hey(url: str, n: int, c: int) -> dict[str, Any]:
    if shutil.which("hey") is None:
        raise HarnessError("hey is not installed (Debian: apt-get install -y hey)")
    cmd = ["hey", "-n", str(n), "-c", str(c), "-m", "POST", "-T", "application/json", "-d", json.dumps(BODY)]
    proc = subprocess.run([*cmd, f"{url}/v1/events"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise HarnessError(f"hey failed: {proc.stderr[-2000:]}")
    return parse_hey(proc.stdout)


def _log_events(log_dir: Path) -> int:
    from features.eventlog import LogReader, log_dirs

    return sum(1 for d in log_dirs(log_dir) for _ in LogReader(d).records())


def _metric(url_port: int, name: str) -> float | None:
    async def get() -> str:
        client = RawClient(url_port, timeout_s=5.0)
        try:
            return (await client.request("GET", "/metrics")).body.decode()
        finally:
            await client.close()

    m = re.search(rf"^{name} ([\d.e+]+)$", asyncio.run(get()), flags=re.M)
    return float(m.group(1)) if m else None


def measure(label: str, run_dir: Path, work: Path, p: IngestParams, source: Path | None) -> dict[str, Any]:
    """One service (fresh log), a warm-up, then hey; acked req/s, CPU-ms per ack, log check."""
    from kolfeed.bench.harness import RedisServer

    log_dir = work / "eventlog"
    redis = RedisServer(log_path=work / "redis.log").start() if p.workers > 1 else None
    cfg = ServiceConfig(
        run_dir=run_dir,
        store_url=redis.url() if redis is not None else "memory://",
        event_log_dir=log_dir,
        log_path=work / "service.log",
        source_dir=source,
        workers=p.workers,
    )
    svc = ServiceProcess(cfg)
    try:
        svc.start()
        assert svc.proc is not None
        _hey(svc.base_url, p.warmup, p.concurrency)
        cpu0 = _cpu_s(svc.proc.pid)
        result = _hey(svc.base_url, p.requests, p.concurrency)
        cpu = _cpu_s(svc.proc.pid) - cpu0
        groups = _metric(svc.port, "kolfeed_event_log_group_commits_total")
        grouped = _metric(svc.port, "kolfeed_event_log_group_commit_requests_total")
    finally:
        svc.stop()
        if redis is not None:
            redis.kill()
    acked = result["statuses"].get("202", 0)
    wall = result["wall_s"] or 0.0
    row = {
        "label": label,
        "sent": sum(result["statuses"].values()),
        "acked": acked,
        "acked_per_s": round(acked / wall, 1) if wall else None,
        "hey_requests_per_s": result["requests_per_s"],
        "latency_ms": result["latency_ms"],
        "statuses": result["statuses"],
        "errors": result["errors"],
        "server_cpu_ms_per_ack": round(cpu * 1000 / acked, 3) if acked else None,
        "in_log": _log_events(log_dir) - p.warmup,
    }
    if groups and grouped:
        row["mean_group_size"] = round(grouped / groups, 2)
    return row


# ------------------------------------------------------------------ SIGKILL under load
async def _kill_under_load(svc: ServiceProcess, p: IngestParams) -> list[tuple[int, int]]:
    """Post unique single events from ``concurrency`` clients, SIGKILL the service; the (item,
    seq) of every 202."""
    client = RawClient(svc.port, timeout_s=10.0, max_connections=p.concurrency * 2)
    acked: list[tuple[int, int]] = []
    counter = iter(range(10**9))
    stop = asyncio.Event()

    async def one_client() -> None:
        while not stop.is_set():
            item = 10_000_000 + next(counter)
            payload = {"events": [{"user_id": item % 97, "item_id": item, "action": "buy"}]}
            r = await client.request("POST", "/v1/events", payload)
            if r.status == 202:
                acked.append((item, int(r.json()["first_seq"])))
            elif r.status in (0, -1):
                return  # the service is gone

    await asyncio.gather(kill_after(svc, p.kill_after_s, stop), *(one_client() for _ in range(p.concurrency)))
    await client.close()
    return acked


def sigkill_check(run_dir: Path, work: Path, p: IngestParams) -> dict[str, Any]:
    from features.event_export import export_events, read_export
    from features.eventlog import LogReader

    log_dir = work / "eventlog"
    svc = ServiceProcess(
        ServiceConfig(
            run_dir=run_dir, store_url="memory://", event_log_dir=log_dir, log_path=work / "svc.log"
        )
    )
    svc.start()
    acked = asyncio.run(_kill_under_load(svc, p))
    logged = {seq: ev.item_id for seq, ev, _ in LogReader(log_dir).records()}
    export_events(log_dir, work / "export", fallback_replica="bench")
    table, _report = read_export(work / "export")
    exported_items = table.column("item_id").to_pylist()
    counts: dict[int, int] = {}
    for item in exported_items:
        counts[item] = counts.get(item, 0) + 1
    return {
        "kill_after_s": p.kill_after_s,
        "acknowledged": len(acked),
        "in_log_at_acked_seq": sum(1 for item, seq in acked if logged.get(seq) == item),
        "in_export_once": sum(1 for item, _ in acked if counts.get(item) == 1),
        "lost": sum(1 for item, seq in acked if logged.get(seq) != item or counts.get(item, 0) == 0),
        "exported_twice": sum(1 for n in counts.values() if n > 1),
        "logged_total": len(logged),
        "logged_not_acknowledged": len(logged) - len(acked),
    }


# ------------------------------------------------------------------ the whole benchmark
def _baseline_checkout(ref: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref],
        check=True,
        capture_output=True,
    )
    return where


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over one label's rounds, and whether every 202 of every round was in its log."""
    return {
        "rounds": len(rows),
        "acked_per_s_median": statistics.median(r["acked_per_s"] for r in rows),
        "server_cpu_ms_per_ack_median": statistics.median(r["server_cpu_ms_per_ack"] for r in rows),
        "p99_ms_median": statistics.median(r["latency_ms"].get("p99", 0.0) for r in rows),
        "all_acked_in_log": all(r["in_log"] == r["acked"] for r in rows),
    }


def run(run_dir: Path | None, results_dir: Path, p: IngestParams, tag: str = "") -> dict[str, Any]:
    from kolfeed.bench.chaos import build_run

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="kolfeed-ingest-"))
    sources: dict[str, Path | None] = {}
    try:
        run = run_dir if run_dir is not None else build_run(work / "build")
        for ref in p.baseline_refs:
            sources[ref] = _baseline_checkout(ref, work / f"src-{ref}")
        sources[CURRENT] = None
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label in sources}
        for r in range(p.rounds):
            for label, source in sources.items():
                d = work / f"{label}-{r}"
                d.mkdir()
                rows[label].append(measure(label, run, d, p, source))
        (work / "kill").mkdir()
        kill = sigkill_check(run, work / "kill", p)
        restart = None
        if p.restart_count:
            from kolfeed.bench import restart_count

            restart = asyncio.run(restart_count.both(work / "restart"))
    finally:
        for source in sources.values():
            if source is not None:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(source)],
                    check=False,
                    capture_output=True,
                )
        shutil.rmtree(work, ignore_errors=True)

    summaries = {label: summary(rs) for label, rs in rows.items()}
    current = summaries[CURRENT]
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "command": f"hey -n {p.requests} -c {p.concurrency} -m POST (one-event batches) against "
        + ("kolfeed serve (memory://)" if p.workers == 1 else f"kolfeed serve --workers {p.workers} (redis)"),
        "params": asdict(p),
        "run": str(run_dir) if run_dir is not None else "world tiny seed 7 + world_graphfilter (built)",
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": list(summaries),
        "rounds": rows,
        "summary": summaries,
        "versus_baselines": {
            ref: {
                "speedup_acked_per_s": round(current["acked_per_s_median"] / s["acked_per_s_median"], 2),
                "cpu_per_ack_ratio": round(
                    current["server_cpu_ms_per_ack_median"] / s["server_cpu_ms_per_ack_median"], 3
                ),
            }
            for ref, s in summaries.items()
            if ref != CURRENT
        },
        "sigkill": kill,
        "restart_exactly_once": restart,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    name = f"ingest_{tag}" if tag else "ingest"
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, results_dir / f"{name}.png")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = result["labels"]
    summaries = result["summary"]
    greys = ("#bbbbbb", "#888888", "#555555")
    colours = [*(greys[i % len(greys)] for i in range(len(labels) - 1)), "#2a7ab0"]
    names = [label if label == CURRENT else f"{label}\n(baseline)" for label in labels]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].bar(names, [summaries[k]["acked_per_s_median"] for k in labels], color=colours)
    axes[0].axhline(1500, color="red", lw=1, ls="--", label="target 1,500/s")
    axes[0].set_ylabel("acknowledged requests/s (median)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].bar(names, [summaries[k]["server_cpu_ms_per_ack_median"] for k in labels], color=colours)
    axes[1].set_ylabel("server CPU-ms per acknowledged request")
    k = result["sigkill"]
    title = (
        f"POST /v1/events, one event per request, {result['params']['concurrency']} clients (hey), "
        f"{result['params']['workers']} worker(s), load {result['load_average_at_start'][0]}"
        f"-{result['load_average_at_end'][0]}; SIGKILL: {k['acknowledged']} acked, {k['lost']} lost"
    )
    restart = result.get("restart_exactly_once")
    if restart:
        title += "; Redis restart double-counted: " + ", ".join(
            f"{name} {restart[name]['double_counted']}" for name in ("redis", "cluster")
        )
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

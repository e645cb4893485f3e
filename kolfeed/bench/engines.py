"""`kolfeed bench scale --engine spark --engine local --events 10M`: the same train config on the same
generated event export, once per engine, side by side.

What is measured per run (a child ``kolfeed train`` process): wall time, CPU seconds, and peak memory of
its process tree sampled from /proc every half second, split into the Python driver, the JVM (with
``local[N]`` the Spark driver and its executors share that one JVM) and Spark's Python workers. A run
that exceeds ``--timeout`` or fails (e.g. out of memory) is recorded as such, not dropped.

Budget: every run, whatever its engine, gets the same wall-time limit and the same memory limit on its
whole process tree (``--memory-gb``). The memory limit is enforced by the sampler itself: when the
tree's resident memory goes over it, the tree is killed and the row says so. (No cgroup: this machine
has cgroup v1 owned by the session machinery; a watchdog works the same everywhere, and its overshoot
is at most one half-second sample of growth.)

The data is a world directory (users, items, KOLs, posts, follows, friends; an empty history) plus a
``date=YYYY-MM-DD`` Parquet export of N events in the `kolfeed events export` layout, read through
``data.events_path`` by both engines. Users have a few interest clusters and items Zipf popularity
within them, so ALS has something to learn and Recall@20 is comparable across engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kolfeed.bench.machine import report_header
from kolfeed.bench.train import metrics_of
from recsys import artifacts as art
from recsys.schema import ACTION_NAMES, CATEGORIES

DAY = 86_400
START_TS = 1_767_225_600  # 2026-01-01 UTC
ACTION_SHARES = {"impression": 0.55, "click": 0.25, "like": 0.06, "save": 0.03, "cart": 0.04, "share": 0.03}
ACTION_SHARES |= {"buy": 0.03, "hide": 0.01}


def parse_count(text: str) -> int:
    """``10M`` / ``30m`` / ``500k`` / ``1000000`` → events."""
    t = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in "kmb" else t
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise ValueError(f"--events {text!r}: expected a count like 10M, 500k or 2000000") from None
    if value < 1000:
        raise ValueError(f"--events {text!r}: at least 1000 events")
    return value


def generate(out: Path, n_events: int, days: int = 30, seed: int = 0) -> dict[str, int]:
    """Write the world tables and the event export for ``n_events`` events (one day at a time, so
    memory stays bounded by a day's events)."""
    rng = np.random.default_rng(seed)
    n_users = max(100, n_events // 100)
    n_items = max(100, min(n_events // 200, 1_000_000))
    n_kols = max(10, n_items // 25)
    clusters = 200
    out.mkdir(parents=True, exist_ok=True)
    users = np.arange(1, n_users + 1, dtype=np.int64)
    items = np.arange(1, n_items + 1, dtype=np.int64) + 10_000_000
    kols = np.arange(1, n_kols + 1, dtype=np.int64) + 20_000_000
    item_cluster = rng.integers(0, clusters, n_items)
    item_kol = rng.integers(0, n_kols, n_items)
    cats = np.array(CATEGORIES)
    pq.write_table(
        pa.table(
            {
                "user_id": users,
                "created_at": np.full(n_users, START_TS - DAY),
                "segment": ["shopper"] * n_users,
            }
        ),
        out / "users.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "item_id": items,
                "category": cats[item_cluster % len(cats)],
                "brand": [f"brand{c % 50}" for c in item_cluster],
                "price": rng.uniform(1, 100, n_items),
                "merchant_id": (item_cluster % 97).astype(np.int64),
                "in_stock": np.ones(n_items, dtype=bool),
            }
        ),
        out / "items.parquet",
    )
    pq.write_table(
        pa.table({"kol_id": kols, "verticals": cats[np.arange(n_kols) % len(cats)]}), out / "kols.parquet"
    )
    posts = np.arange(1, n_items + 1, dtype=np.int64) + 30_000_000  # one post per item, by its KOL
    pq.write_table(
        pa.table(
            {
                "post_id": posts,
                "kol_id": kols[item_kol],
                "item_id": items,
                "created_at": np.full(n_items, START_TS),
            }
        ),
        out / "posts.parquet",
    )
    fu = rng.integers(0, n_users, n_users * 3)
    pairs = np.unique(np.stack([fu, rng.integers(0, n_kols, len(fu))], axis=1), axis=0)
    pq.write_table(
        pa.table(
            {"user_id": users[pairs[:, 0]], "kol_id": kols[pairs[:, 1]], "ts": np.full(len(pairs), START_TS)}
        ),
        out / "follows.parquet",
    )
    a, b = rng.integers(0, n_users, n_users * 2), rng.integers(0, n_users, n_users * 2)
    keep = a != b
    pq.write_table(
        pa.table({"user_id": users[a[keep]], "friend_id": users[b[keep]]}), out / "friends.parquet"
    )
    empty = {
        "ts": pa.array([], pa.int64()),
        "user_id": pa.array([], pa.int64()),
        "item_id": pa.array([], pa.int64()),
        "action": pa.array([], pa.string()),
    }
    pq.write_table(pa.table(empty), out / "events.parquet")

    order = np.argsort(item_cluster, kind="stable")  # items grouped by cluster, Zipf within it
    bounds = np.searchsorted(item_cluster[order], np.arange(clusters + 1))
    interests = rng.integers(0, clusters, (n_users, 2))
    activity = rng.lognormal(0.0, 0.8, n_users)
    activity /= activity.sum()
    names = np.array(list(ACTION_SHARES))
    shares = np.array(list(ACTION_SHARES.values()))
    export = out / "export"
    per_day = np.full(days, n_events // days)
    per_day[: n_events - per_day.sum()] += 1
    seq = 0
    for day, n in enumerate(per_day):
        u = rng.choice(n_users, size=n, p=activity)
        c = interests[u, (rng.random(n) < 0.3).astype(np.int64)]
        lo, hi = bounds[c], bounds[c + 1]
        span = np.maximum(hi - lo, 1)
        rank = np.minimum((rng.pareto(1.2, n) * 2).astype(np.int64), span - 1)
        local = order[np.minimum(lo + rank, n_items - 1)]
        anywhere = rng.integers(0, n_items, n)
        item = np.where(rng.random(n) < 0.85, local, anywhere)
        action = names[rng.choice(len(names), size=n, p=shares)]
        via_kol = rng.random(n) < 0.5
        share = action == "share"
        to_user = np.where(share, users[rng.integers(0, n_users, n)], 0)
        table = pa.table(
            {
                "ts": (START_TS + day * DAY + rng.integers(0, DAY, n)).astype(np.int64),
                "user_id": users[u],
                "item_id": items[item],
                "action": pa.array(action, pa.string()),
                "post_id": pa.array(np.where(via_kol, posts[item], 0), pa.int64(), mask=~via_kol),
                "kol_id": pa.array(np.where(via_kol, kols[item_kol[item]], 0), pa.int64(), mask=~via_kol),
                "to_user_id": pa.array(to_user, pa.int64(), mask=~share),
                "request_id": pa.nulls(n, pa.string()),
                "value": pa.nulls(n, pa.float64()),
                "replica": pa.array(["bench"] * n, pa.string()),
                "worker": pa.array(np.zeros(n, np.int32), pa.int32()),
                "seq": np.arange(seq, seq + n, dtype=np.int64),
            }
        )
        seq += n
        part = export / f"date={np.datetime64(START_TS // DAY + day, 'D')}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, part / "part-0.parquet")
    assert set(ACTION_SHARES) <= set(ACTION_NAMES)
    return {"events": int(n_events), "users": n_users, "items": n_items, "kols": n_kols, "days": days}


class TreeMemory:
    """Peak RSS of a process and its descendants, sampled from /proc (driver, JVM, Python workers)."""

    def __init__(self, pid: int, every: float = 0.5, limit_mb: float | None = None) -> None:
        self.pid = pid
        self.every = every
        self.limit_mb = limit_mb
        self.over_limit_at: float | None = None
        """Seconds after start when the tree went over ``limit_mb`` (it was killed then)."""
        self.peak = {"driver_mb": 0.0, "jvm_mb": 0.0, "workers_mb": 0.0, "total_mb": 0.0}
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = self.sample()
            if self.limit_mb is not None and total > self.limit_mb and self.over_limit_at is None:
                self.over_limit_at = time.perf_counter() - self._t0
                _kill_tree(self.pid)
            self._stop.wait(self.every)

    def sample(self) -> float:
        """Record one sample of the tree; returns its total resident MB."""
        parent: dict[int, int] = {}
        name: dict[int, str] = {}
        rss: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/statm") as f:
                    pages = int(f.read().split()[1])
            except OSError:
                continue
            pid = int(entry)
            close = stat.rfind(")")
            name[pid] = stat[stat.find("(") + 1 : close]
            parent[pid] = int(stat[close + 2 :].split()[1])
            rss[pid] = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        tree = {self.pid}
        grew = True
        while grew:
            new = {p for p, pp in parent.items() if pp in tree and p not in tree}
            tree |= new
            grew = bool(new)
        now = {"driver_mb": rss.get(self.pid, 0.0), "jvm_mb": 0.0, "workers_mb": 0.0}
        for p in tree - {self.pid}:
            key = "jvm_mb" if name.get(p) == "java" else "workers_mb"
            now[key] += rss.get(p, 0.0)
        now["total_mb"] = sum(now.values())
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        return now["total_mb"]


BENCH_SETS = ("eval.max_users=5000", "model.params.iterations=10", "model.params.factors=64")
"""Overrides of every bench run (both engines): a seeded 5000-user evaluation sample, 10 ALS sweeps."""
SPARK_SETS = ("engine.conf.spark.driver.memory=8g",)
"""With ``local[N]`` the driver JVM is also the executor: Spark's default 1 GB heap runs out at 10M
events (measured: OutOfMemoryError in the first aggregation), so the bench gives it 8 GB."""


def run_engine(
    engine: str,
    config: Path,
    data: Path,
    work: Path,
    timeout: float,
    tag: str,
    memory_mb: float | None = None,
) -> dict[str, Any]:
    """One ``kolfeed train`` child with ``engine.name``; its time, memory and metrics. The child is
    killed after ``timeout`` seconds or when its process tree holds more than ``memory_mb``."""
    args = [
        "train", str(config), "--out", str(work / "runs"), "--quiet",
        "--set", f"data.path={data}", "--set", f"data.events_path={data / 'export'}",
        "--set", f"engine.name={engine}",
    ]  # fmt: skip
    for extra in BENCH_SETS + (SPARK_SETS if engine == "spark" else ()):
        args += ["--set", extra]
    out_path, err_path = work / f"{tag}.stdout", work / f"{tag}.stderr"
    row: dict[str, Any] = {"engine": engine}
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "kolfeed.cli", *args], stdout=out, stderr=err)
        with TreeMemory(proc.pid, limit_mb=memory_mb) as memory:
            try:
                proc.wait(timeout=timeout)
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
                if memory.over_limit_at is not None:
                    gb = (memory_mb or 0) / 1024
                    status = f"out of memory budget ({gb:g} GB) after {memory.over_limit_at:.0f} s"
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid)
                proc.wait()
                status = f"timeout after {timeout:.0f} s"
        row["wall_seconds"] = time.perf_counter() - t0
    row["status"] = status
    row.update({f"peak_{k}": round(v, 1) for k, v in memory.peak.items()})
    if status == "ok":
        run_dir = Path(out_path.read_text().strip().splitlines()[-1])
        m = art.verify_run_dir(run_dir).metrics
        row.update(
            metrics_of(
                m, ("recall@20", "ndcg@20", "eval_users", "fit_seconds", "eval_seconds", "load_seconds")
            )
        )
    else:
        row["error"] = " | ".join(err_path.read_text(errors="replace").strip().splitlines()[-2:])[-400:]
    return row


def _kill_tree(pid: int) -> None:
    """Stop a timed-out run and the JVM/workers it started (children first)."""
    import signal

    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for child in children:
        _kill_tree(int(child))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run(
    engines: list[str],
    counts: list[int],
    config: Path,
    results: Path,
    work: Path,
    timeout: float,
    budget: float,
    memory_mb: float | None = None,
) -> dict[str, Any]:
    """Every (size, engine) pair in order while the total ``budget`` (seconds) lasts; each run within
    ``timeout`` seconds and ``memory_mb`` of resident memory (its whole process tree)."""
    results.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = report_header(
        config=str(config), timeout_seconds=timeout, memory_budget_mb=memory_mb, rows=[]
    )
    started = time.perf_counter()
    for n in counts:
        data = work / f"events_{n}"
        if not (data / "export").is_dir():
            t0 = time.perf_counter()
            print(f"[bench scale] generating {n:,} events ...", file=sys.stderr, flush=True)
            sizes = generate(data, n)
            (data / "sizes.json").write_text(json.dumps(sizes))
            print(f"[bench scale]   {sizes} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        sizes = json.loads((data / "sizes.json").read_text())
        for engine in engines:
            left = budget - (time.perf_counter() - started)
            if left <= 60:
                report["rows"].append(
                    {**sizes, "engine": engine, "status": "skipped (bench time budget spent)"}
                )
                continue
            print(f"[bench scale] {engine} on {n:,} events ...", file=sys.stderr, flush=True)
            row = run_engine(engine, config, data, work, min(timeout, left), f"{engine}_{n}", memory_mb)
            row = {
                **sizes,
                **row,
                "budget": {"wall_seconds": round(min(timeout, left)), "memory_mb": memory_mb},
                "loadavg_after": list(os.getloadavg()),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "code": code_version(),
            }
            report["rows"].append(row)
            print(f"[bench scale]   {json.dumps(row)}", file=sys.stderr, flush=True)
    report["loadavg_end"] = list(os.getloadavg())
    path = results / "scale_engines.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    report["rows"] = _keep_earlier_rows(earlier.get("rows", []), report["rows"])
    if earlier.get("notes"):  # the earlier file's notes stay with its rows
        report["notes"] = earlier["notes"]
    path.write_text(json.dumps(report, indent=2))
    plot(report, results / "scale_engines.png")
    return report


def code_version() -> str:
    """The commit the bench ran (``git describe --always --dirty``), so a row says which code it
    measured when rows of several invocations sit in one file; ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _keep_earlier_rows(earlier: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This invocation's rows plus the earlier result file's rows for the (events, engine) pairs it
    did not run, so engines and sizes can be measured in separate invocations (each row keeps its
    own ``measured_at`` and load average)."""
    if not earlier:
        return rows
    done = {(r["events"], r["engine"]) for r in rows if "wall_seconds" in r}
    kept = [r for r in earlier if (r["events"], r["engine"]) not in done and "wall_seconds" in r]
    mine = [
        r
        for r in rows
        if "wall_seconds" in r or (r["events"], r["engine"]) not in {(k["events"], k["engine"]) for k in kept}
    ]
    return sorted(kept + mine, key=lambda r: (r["events"], r["engine"]))


def _short_status(row: dict[str, Any]) -> str:
    """A bar's label: empty for a finished run, else why and when it stopped."""
    status, minutes = row["status"], row["wall_seconds"] / 60
    if status == "ok":
        return ""
    if status.startswith("out of memory budget"):
        return f"over memory budget at {minutes:.0f} min"
    if status.startswith("timeout"):
        return f"stopped at {minutes:.0f} min"
    return "failed"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "wall_seconds" in r]
    sizes = sorted({r["events"] for r in rows})
    engines = sorted({r["engine"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    width = 0.8 / max(len(engines), 1)
    colors = {"local": "#9ca3af", "spark": "#e25a1c"}
    for j, engine in enumerate(engines):
        xs, wall, mem, recall, failed = [], [], [], [], []
        for i, n in enumerate(sizes):
            r = next((r for r in rows if r["events"] == n and r["engine"] == engine), None)
            if r is None:
                continue
            xs.append(i + j * width)
            wall.append(r["wall_seconds"] / 60)
            mem.append(r["peak_total_mb"] / 1024)
            recall.append(r.get("recall@20") or 0.0)
            failed.append(_short_status(r))
        c = colors.get(engine, "#2563eb")
        axes[0].bar(xs, wall, width, label=engine, color=c, hatch=None)
        axes[1].bar(xs, mem, width, label=engine, color=c)
        axes[2].bar(xs, recall, width, label=engine, color=c)
        for x, w, f in zip(xs, wall, failed, strict=True):
            if f:
                axes[0].text(x, w, f, rotation=90, ha="center", va="bottom", fontsize=8)
    budgets = [r.get("budget") or {} for r in rows]
    walls = {float(b["wall_seconds"]) if b.get("wall_seconds") else 0.0 for b in budgets}
    memories = {float(b["memory_mb"]) if b.get("memory_mb") else 0.0 for b in budgets}
    if len(walls) == 1 and 0.0 not in walls:  # one budget for every bar: draw it (each kind alone)
        axes[0].axhline(walls.pop() / 60, color="red", linestyle="--", label="budget")
    if len(memories) == 1 and 0.0 not in memories:
        axes[1].axhline(memories.pop() / 1024, color="red", linestyle="--", label="budget")
    labels = [f"{n / 1e6:g}M" for n in sizes]
    for ax, title in zip(
        axes, ("whole run (minutes)", "peak memory, process tree (GB)", "Recall@20"), strict=True
    ):
        ax.set_xticks([i + width * (len(engines) - 1) / 2 for i in range(len(sizes))], labels)
        ax.set_xlabel("events")
        ax.set_title(title)
        ax.margins(y=0.25)
        ax.legend(loc="upper left")
    load = report["loadavg_start"][0]
    fig.suptitle(
        f"kolfeed train, local vs Spark engine ({report['machine_cores']} cores, load {load:.1f} at start)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

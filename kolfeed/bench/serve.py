"""``kolfeed bench serve``: speed and memory of the feed service on a million-item synthetic catalog.

Why these layers side by side: an HTTP latency alone cannot say where the time goes, and on a shared
2-core machine it also measures the neighbours. So one run reports (1) the in-process cost of one
``FeedRanker.rank`` call, of the feed handler with its real Redis reads but no HTTP, and of the whole
ASGI app without sockets; (2) open-loop HTTP load from a separate process (:mod:`kolfeed.bench.loadgen`)
at the target rate, then stepped up to find the highest rate still within the p99 budget; (3) the
server's CPU per request and its memory (VmRSS/VmHWM); (4) ANN recall@100 of the served index vs exact;
(5) with ``--floor``, the same load on the service with ranking replaced by a fixed page
(:mod:`kolfeed.bench.floor_serve`): the CPU a feed costs besides ranking, the floor under any target.

Everything is real: a run directory written with :mod:`recsys.artifacts` and loaded (checksums
verified) by ``kolfeed serve`` in a subprocess, Redis db 12 under a unique key prefix (cleared after).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kolfeed.bench.harness import REPO, ServiceConfig, ServiceProcess
from kolfeed.bench.loadgen import LoadSpec, user_ids
from recsys.progress import progress as progress_bar
from recsys.user_neighbours import DEFAULT_K as USER_NEIGHBOURS_K

TARGET_P99_MS = 15.0
TARGET_P50_MS = 5.0
TARGET_RECALL = 0.95
TARGET_RSS_MB = 2048.0


class BenchServeError(RuntimeError):
    """The benchmark could not run (Redis down, server did not start, bad option); message says why."""


@dataclass
class ServeBenchConfig:
    items: int = 1_000_000
    users: int = 100_000
    kols: int = 20_000
    dim: int = 64
    factory: str = "MIPS,IVF4096,SQfp16"
    spectrum_decay: float = 1.0
    """Embedding spectrum (see recsys.ranking.random_model): 1.0 is like trained embeddings, 0 isotropic."""
    search_params: list[int] = field(default_factory=lambda: [48, 64, 80, 96, 104, 112, 128, 160, 192])
    """nprobe (IVF) or efSearch (HNSW) values whose recall@100 is measured, in increasing order; the
    smallest reaching the target is served (recorded in index.json, which FeedModel.load applies)."""
    recall_queries: int = 1000
    redis_url: str = "redis://127.0.0.1:6379/12"
    events_per_user: int = 16
    rate: float = 500.0
    duration_s: float = 60.0
    step_rates: list[float] = field(
        default_factory=lambda: [50, 100, 200, 300, 400, 500, 750, 1000, 1500, 2000]
    )
    step_duration_s: float = 15.0
    warmup_s: float = 5.0
    unknown_frac: float = 0.05
    in_process_calls: int = 1000
    seed: int = 0
    workers: int = 2
    """``kolfeed serve --workers``: server processes sharing the port (each loads the model). Two, as
    one would deploy on the 2-core benchmark machine: one Python process uses one core."""
    workdir: Path | None = None
    """Where the run directory goes (default: a fresh temporary directory, removed after)."""
    floor: bool = False
    """Also offer the same load to the fixed-page service (:mod:`kolfeed.bench.floor_serve`)."""
    user_neighbours: int = USER_NEIGHBOURS_K
    """Each user's first neighbours kept in the served run, as ``kolfeed index build`` keeps them
    (:mod:`recsys.user_neighbours`); 0: the ranker searches on every feed."""


# ------------------------------------------------------------------ run directory
def write_synthetic_run(cfg: ServeBenchConfig, out: Path) -> dict[str, Any]:
    """Synthetic world → a verified run directory (arrays, Parquet tables, FAISS index, manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recsys import artifacts as A
    from recsys.index import INDEX_INFO, _find_ivf, build_index, exact_recall, save_index, set_search_params
    from recsys.ranking.random_model import random_run

    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    w = random_run(
        n_items=cfg.items,
        n_users=cfg.users,
        n_kols=cfg.kols,
        dim=cfg.dim,
        seed=cfg.seed,
        spectrum_decay=cfg.spectrum_decay,
    )
    info["world_s"] = round(time.perf_counter() - t0, 2)
    out.mkdir(parents=True, exist_ok=True)
    A.save_array(out / A.USER_EMB, w.user_emb)
    A.save_array(out / A.ITEM_EMB, w.item_emb)
    A.save_array(out / A.USER_IDS, w.user_ids)
    A.save_array(out / A.ITEM_IDS, w.item_ids)
    A.save_array(out / A.ITEM_POPULARITY, w.item_popularity)
    for name, columns in w.tables.items():
        sub = out / (A.CATALOG_DIR if name in ("items", "kols", "posts") else A.SOCIAL_DIR)
        sub.mkdir(exist_ok=True)
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), sub / f"{name}.parquet")

    t0 = time.perf_counter()
    print(f"bench serve: building {cfg.factory} over {cfg.items:,} items ...", file=sys.stderr, flush=True)
    index = build_index(w.item_emb, cfg.factory)
    info["index_build_s"] = round(time.perf_counter() - t0, 2)
    rng = np.random.default_rng(cfg.seed + 1)
    n_q = min(cfg.recall_queries, cfg.users)
    queries = w.user_emb[np.sort(rng.choice(cfg.users, size=n_q, replace=False))]
    k = min(100, cfg.items)
    recall: dict[str, float] = {}
    param = "nprobe" if _find_ivf(index) is not None else "ef_search"
    served = max(cfg.search_params)
    for value in sorted(cfg.search_params):
        set_search_params(index, **{param: value})
        recall[str(value)] = round(exact_recall(index, w.item_emb, queries, k), 4)
        if recall[str(value)] >= TARGET_RECALL:
            served = value
            break
    set_search_params(index, **{param: served})
    save_index(index, out / A.INDEX)
    # FAISS does not persist efSearch/nprobe; FeedModel.load reads them back from index.json
    index_info = {"factory": cfg.factory, "metric": "ip", param: served, f"recall@{k}_vs_exact": recall}
    (out / INDEX_INFO).write_text(json.dumps(index_info, indent=2))
    del index
    info.update(
        {
            "factory": cfg.factory,
            "k": k,
            "recall_queries": n_q,
            "search_param": param,
            "recall_vs_exact_by_search_param": recall,
            "search_param_served": served,
            "recall_served": recall[str(served)],
            "spectrum_decay": cfg.spectrum_decay,
        }
    )
    manifest = A.Manifest(
        run_id=A.new_run_id("bench-serve"),
        version=1,
        created_at=time.time(),
        config={
            "synthetic": {k2: v for k2, v in asdict(cfg).items() if k2 in ("items", "users", "kols", "dim")}
        },
        data_fingerprint=f"synthetic-seed-{cfg.seed}",
    )
    A.write_manifest(out, manifest)
    info["run_dir_mb"] = round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1)
    return info


def _world_key(cfg: ServeBenchConfig) -> dict[str, Any]:
    keys = (
        "items",
        "users",
        "kols",
        "dim",
        "factory",
        "spectrum_decay",
        "search_params",
        "recall_queries",
        "seed",
    )
    return {k: getattr(cfg, k) for k in keys}


def reuse_or_write_run(cfg: ServeBenchConfig, run_dir: Path, info_path: Path) -> dict[str, Any]:
    """Reuse a run directory a previous ``--workdir`` run built with the same world options (building
    a million-item HNSW index takes minutes); otherwise (re)build it."""
    from recsys.artifacts import ArtifactError, verify_run_dir

    if info_path.is_file() and run_dir.is_dir():
        saved = json.loads(info_path.read_text())
        if saved.get("world") == _world_key(cfg):
            try:
                verify_run_dir(run_dir)
                return {**saved["build"], "reused": True}
            except ArtifactError:
                pass
    if run_dir.exists():
        shutil.rmtree(run_dir)
    info_path.unlink(missing_ok=True)
    build = write_synthetic_run(cfg, run_dir)
    info_path.write_text(json.dumps({"world": _world_key(cfg), "build": build}, indent=2))
    return build


def sync_user_neighbours(run_dir: Path, k: int) -> dict[str, Any]:
    """Give the (new or reused) run the user-neighbour table ``k`` asks for: written when missing or
    of another size, removed for 0; the manifest is re-checksummed after a change."""
    from recsys import artifacts as A
    from recsys import user_neighbours
    from recsys.ranking.run_reader import read_run_dir

    info_path = run_dir / user_neighbours.INFO
    if info_path.is_file() and k > 0:
        have = json.loads(info_path.read_text())
        if have.get("k") == k and (run_dir / user_neighbours.TABLE).is_file():
            return {**have, "reused": True}
    if k <= 0 and not info_path.is_file() and not (run_dir / user_neighbours.TABLE).is_file():
        return {"skipped": "user_neighbours is 0"}
    contents = read_run_dir(run_dir, build_missing_index=False)
    assert contents.index is not None  # (read_run_dir raised otherwise)
    t0 = time.perf_counter()
    print(f"bench serve: searching {k} neighbours per user for the run ...", file=sys.stderr, flush=True)
    info = user_neighbours.write(run_dir, contents.index, contents.user_emb, k)
    A.write_manifest(run_dir, contents.manifest)
    return {**info, "seconds": round(time.perf_counter() - t0, 2)}


# ------------------------------------------------------------------ Redis
def bench_store_url(base: str) -> str:
    """``base`` with a unique key prefix so the benchmark never touches anyone else's keys."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}prefix=kfbench:{os.getpid()}:{uuid.uuid4().hex[:8]}:"


async def populate_store(cfg: ServeBenchConfig, run_dir: Path, url: str, batch: int = 5000) -> dict[str, Any]:
    """Recent activity for every user: impressions (seen), clicks, shares and a buy, with creators and
    categories, so user-state reads, live KOL affinity, friends' purchases and trending are all real."""
    import pyarrow.parquet as pq

    from features.base import StoreEvent
    from features.factory import open_store
    from recsys import artifacts as A

    items = pq.read_table(run_dir / A.CATALOG_DIR / "items.parquet", columns=["item_id", "category"])
    item_ids = items.column("item_id").to_numpy()
    cats = np.asarray(items.column("category").to_pylist())
    posts = pq.read_table(run_dir / A.CATALOG_DIR / "posts.parquet", columns=["kol_id", "item_id"])
    post_kol = posts.column("kol_id").to_numpy()
    post_item_row = np.searchsorted(item_ids, posts.column("item_id").to_numpy())
    pop = A.load_array(run_dir / A.ITEM_POPULARITY).astype(np.float64)
    cum = np.cumsum(pop / pop.sum())
    rng = np.random.default_rng(cfg.seed + 2)
    store = open_store(url)
    now = time.time()
    n_events = 0
    t0 = time.perf_counter()
    per_user = max(cfg.events_per_user, 4)
    n_imp = per_user - 4  # + 2 clicks, 1 share, 1 buy (the positive ones follow popularity)
    try:
        if not await store.ping():
            raise BenchServeError(f"Redis at {store.url} is not answering")
        events: list[StoreEvent] = []
        for uid in progress_bar(range(cfg.users), desc="redis users", mininterval=2):
            ts = now - rng.uniform(0, 86_400, per_user)
            imp = rng.integers(0, len(item_ids), n_imp)
            pos_posts = rng.integers(0, len(post_kol), 4)
            pos_rows = np.where(
                rng.random(4) < 0.5, post_item_row[pos_posts], np.searchsorted(cum, rng.random(4))
            )
            pos_rows = np.minimum(pos_rows, len(item_ids) - 1)
            for j, row in enumerate(imp.tolist()):
                events.append(StoreEvent(float(ts[j]), uid, int(item_ids[row]), "impression"))
            for j, (row, action) in enumerate(
                zip(pos_rows.tolist(), ("click", "click", "share", "buy"), strict=True)
            ):
                events.append(
                    StoreEvent(
                        float(ts[n_imp + j]),
                        uid,
                        int(item_ids[row]),
                        action,
                        kol_id=int(post_kol[pos_posts[j]]),
                        category=str(cats[row]),
                    )
                )
            if len(events) >= batch:
                await store.record_events(events)
                n_events += len(events)
                events = []
        if events:
            await store.record_events(events)
            n_events += len(events)
    finally:
        await store.close()
    return {"users": cfg.users, "events": n_events, "seconds": round(time.perf_counter() - t0, 1)}


async def clear_store(url: str) -> None:
    from features.factory import open_store

    store = open_store(url)
    try:
        await store.clear()
    finally:
        await store.close()


# ------------------------------------------------------------------ in-process timings
def _pct(ms: np.ndarray) -> dict[str, float]:
    return {
        "calls": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


async def _time_app(cfg: ServeBenchConfig, run_dir: Path, url: str, loaded: Any) -> dict[str, Any]:
    """The feed handler called directly (real Redis reads, the app's trending cache, ranking, the JSON
    page) and the whole ASGI app in-process (routing, validation, middlewares) — no sockets."""
    import httpx
    from pydantic import SecretStr

    from serving.app import create_app
    from serving.feed_service import get_feed
    from serving.schemas import FeedQuery
    from serving.service_state import service_state
    from serving.settings import Settings

    settings = Settings(
        run_dir=run_dir,
        runs_root=run_dir.parent,
        store_url=SecretStr(url),
        ranking_dir=REPO / "configs" / "ranking",
        experiments_dir=REPO / "configs" / "experiments",
        event_log_dir=None,
    )
    app = create_app(settings, preloaded=loaded)
    spec = LoadSpec(port=0, rate=1, duration_s=1, users=cfg.users, unknown_frac=cfg.unknown_frac, seed=7)
    uids = [int(u) for u in user_ids(spec, cfg.in_process_calls + 20)]
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        st = service_state(app)
        handler = np.empty(cfg.in_process_calls)
        degraded = 0
        for j, uid in enumerate(uids):
            t0 = time.perf_counter()
            resp = await get_feed(
                FeedQuery(user_id=str(uid)),
                st.settings,
                st.holder,
                st.require_store(),
                st.variants,
                st.metrics,
                st.trending_cache,
                st.experiments,
            )
            if j >= 20:  # the first 20 warm up
                handler[j - 20] = time.perf_counter() - t0
                degraded += resp.degraded
        out["handler"] = {**_pct(handler * 1e3), "degraded": degraded}
        transport = httpx.ASGITransport(app=app)
        asgi = np.empty(cfg.in_process_calls)
        errors = 0
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for j, uid in enumerate(uids):
                t0 = time.perf_counter()
                r = await client.get("/v1/feed", params={"user_id": uid})
                if j >= 20:
                    asgi[j - 20] = time.perf_counter() - t0
                    errors += r.status_code != 200
        out["asgi"] = {**_pct(asgi * 1e3), "errors": errors}
    return out


def in_process(cfg: ServeBenchConfig, run_dir: Path, url: str) -> dict[str, Any]:
    from recsys.ranking.random_model import time_rank
    from recsys.ranking.variants import load_variants
    from serving.state import load_model

    t0 = time.perf_counter()
    loaded = load_model(run_dir)
    load_s = time.perf_counter() - t0
    variant = load_variants(REPO / "configs" / "ranking")["default"]
    rank = time_rank(loaded.model, variant, calls=cfg.in_process_calls, seed=cfg.seed + 3)
    out = {"model_load_s": round(load_s, 2), "rank": rank}
    out.update(asyncio.run(_time_app(cfg, run_dir, url, loaded)))
    return out


# ------------------------------------------------------------------ the server process
def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (the worker processes of ``kolfeed serve --workers``)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids = [int(x) for x in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *descendants(kid)]
    return out


def tree_status(pid: int) -> dict[str, Any]:
    """:func:`proc_status` summed over ``pid`` and its descendants: CPU and RSS in total, the largest
    single process's peak RSS (the per-process memory budget), and each process's figures."""
    procs = []
    for p in [pid, *descendants(pid)]:
        try:
            procs.append({"pid": p, **proc_status(p)})
        except OSError:  # exited meanwhile
            continue
    return {
        "VmRSS": round(sum(p.get("VmRSS", 0.0) for p in procs), 1),
        "VmHWM": max((p.get("VmHWM", 0.0) for p in procs), default=0.0),
        "cpu_s": round(sum(p["cpu_s"] for p in procs), 2),
        "processes": procs,
    }


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM in MB and CPU seconds (user + system, all threads) of a live process."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(rest.split()[0]) / 1024, 1)
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def offer_load(
    cfg: ServeBenchConfig, port: int, pid: int, rate: float, duration_s: float, seed: int
) -> dict[str, Any]:
    """One open-loop load run from a separate process; adds the server's CPU per request."""
    cmd = [sys.executable, "-m", "kolfeed.bench.loadgen", "--port", str(port), "--rate", str(rate)]
    cmd += ["--duration", str(duration_s), "--users", str(cfg.users), "--unknown-frac", str(cfg.unknown_frac)]
    cmd += ["--seed", str(seed)]
    before = tree_status(pid)
    load0 = os.getloadavg()[0]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=duration_s + 300)
    if done.returncode != 0:
        raise BenchServeError(f"load generator failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    after = tree_status(pid)
    served = max(out["requests"], 1)
    out["server_cpu_ms_per_request"] = round((after["cpu_s"] - before["cpu_s"]) * 1000 / served, 3)
    out["server_cpu_util"] = round((after["cpu_s"] - before["cpu_s"]) / max(out["elapsed_s"], 1e-9), 3)
    out["loadavg_1m_before"] = round(load0, 2)
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return out


def within_budget(r: dict[str, Any]) -> bool:
    return bool(
        r["errors"] == 0
        and r.get("p99_ms", 1e9) <= TARGET_P99_MS
        and r["achieved_rps"] >= 0.95 * r["offered_rps"]
    )


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['offered_rps']:>6.0f} req/s offered, {r['achieved_rps']:>7.1f} done: p50 {r['p50_ms']:.2f} "
        f"p90 {r['p90_ms']:.2f} p99 {r['p99_ms']:.2f} max {r['max_ms']:.1f} ms, errors {r['errors']}, "
        f"degraded {r['degraded']}, server {r['server_cpu_ms_per_request']:.2f} CPU-ms/req, "
        f"load {r['loadavg_1m_before']:.1f}"
    )


def bench_service(
    run_dir: Path, url: str, work: Path, workers: int, fixed_page: bool = False
) -> ServiceProcess:
    """The feed service of the serving benchmarks, logging to ``work/server.log``; ``fixed_page``:
    its floor, ranking replaced by a fixed page."""
    return ServiceProcess(
        ServiceConfig(
            run_dir=run_dir,
            store_url=url,
            # a fresh log per run: a kept --workdir may hold another run's single or per-worker layout
            event_log_dir=Path(tempfile.mkdtemp(dir=work, prefix="eventlog-")),
            log_path=work / "server.log",
            workers=workers,
            fixed_page=fixed_page,
        )
    )


def http_load(
    cfg: ServeBenchConfig, run_dir: Path, url: str, work: Path, fixed_page: bool = False
) -> dict[str, Any]:
    svc = bench_service(run_dir, url, work, cfg.workers, fixed_page)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        svc.start(timeout_s=900)
    except Exception as exc:
        log = (work / "server.log").read_text()[-2000:] if (work / "server.log").is_file() else ""
        raise BenchServeError(f"kolfeed serve did not start: {exc}\n{log}") from None
    try:
        assert svc.proc is not None
        pid = svc.proc.pid
        out["server_start_s"] = round(time.perf_counter() - t0, 1)
        out["server_after_start"] = tree_status(pid)
        who = "bench serve (floor: fixed page)" if fixed_page else "bench serve"
        say = lambda s: print(f"{who}: {s}", file=sys.stderr, flush=True)  # noqa: E731
        if cfg.warmup_s > 0:
            offer_load(cfg, svc.port, pid, min(cfg.rate, 200.0), cfg.warmup_s, seed=cfg.seed + 10)
        say(f"HTTP {cfg.rate:.0f} req/s for {cfg.duration_s:.0f} s ...")
        main = offer_load(cfg, svc.port, pid, cfg.rate, cfg.duration_s, seed=cfg.seed + 11)
        say(_line(main))
        out["target_rate"] = main
        steps = []
        for j, rate in enumerate(cfg.step_rates):
            r = offer_load(cfg, svc.port, pid, rate, cfg.step_duration_s, seed=cfg.seed + 20 + j)
            r["within_budget"] = within_budget(r)
            steps.append(r)
            say("step " + _line(r))
            if not r["within_budget"]:
                break
        out["steps"] = steps
        ok = [s["offered_rps"] for s in steps if s["within_budget"]]
        out["max_sustainable_rps"] = max(ok) if ok else 0.0
        out["server_after_load"] = tree_status(pid)
    finally:
        svc.stop()
        shutil.rmtree(svc.config.event_log_dir, ignore_errors=True)
    return out


# ------------------------------------------------------------------ whole benchmark
@contextmanager
def _workdir(cfg: ServeBenchConfig) -> Iterator[Path]:
    if cfg.workdir is not None:
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        yield cfg.workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix="kolfeed-bench-serve-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(cfg: ServeBenchConfig, results: Path, command: str = "") -> dict[str, Any]:
    if cfg.items < 100 or cfg.users < 10:
        raise BenchServeError("--items must be >= 100 and --users >= 10")
    if cfg.rate <= 0 or cfg.duration_s <= 0:
        raise BenchServeError("--rate and --duration must be positive")
    report: dict[str, Any] = {
        "command": command,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "targets": {
            "p50_ms": TARGET_P50_MS,
            "p99_ms": TARGET_P99_MS,
            "rate": cfg.rate,
            "recall@100": TARGET_RECALL,
            "rss_mb": TARGET_RSS_MB,
        },
    }
    from features.factory import redact_url

    url = bench_store_url(cfg.redis_url)
    report["store"] = redact_url(url)
    with _workdir(cfg) as work:
        run_dir = work / "runs" / "synthetic"
        report["build"] = reuse_or_write_run(cfg, run_dir, work / "build.json")
        report["build"]["user_neighbours"] = sync_user_neighbours(run_dir, cfg.user_neighbours)
        b = report["build"]
        print(
            f"bench serve: recall@100 by {b['search_param']} {b['recall_vs_exact_by_search_param']}",
            file=sys.stderr,
        )
        try:
            report["redis"] = asyncio.run(populate_store(cfg, run_dir, url))
            report["in_process"] = in_process(cfg, run_dir, url)
            print(f"bench serve: in-process {json.dumps(report['in_process'])}", file=sys.stderr, flush=True)
            report["http"] = http_load(cfg, run_dir, url, work)
            if cfg.floor:
                report["http_floor"] = http_load(cfg, run_dir, url, work, fixed_page=True)
        finally:
            asyncio.run(clear_store(url))
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["summary"] = summary(report)
    results.mkdir(parents=True, exist_ok=True)
    (results / "serve.json").write_text(json.dumps(report, indent=2))
    plot(report, results / "serve.png")
    return report


def floor_summary(r: dict[str, Any]) -> dict[str, Any]:
    """The fixed-page service's CPU per request beside the real one's, at each rate both ran."""
    real, floor = r["http"], r["http_floor"]
    pairs = [(real["target_rate"], floor["target_rate"])]
    pairs += list(zip(real["steps"], floor["steps"], strict=False))
    rows = [
        {
            "offered_rps": a["offered_rps"],
            "server_cpu_ms_per_request": a["server_cpu_ms_per_request"],
            "floor_server_cpu_ms_per_request": b["server_cpu_ms_per_request"],
            "floor_share": round(b["server_cpu_ms_per_request"] / a["server_cpu_ms_per_request"], 3)
            if a["server_cpu_ms_per_request"] > 0
            else None,
        }
        for a, b in pairs
    ]
    return {"floor_server_cpu_ms_per_request": rows[0]["floor_server_cpu_ms_per_request"], "by_rate": rows}


def summary(r: dict[str, Any]) -> dict[str, Any]:
    h, ip = r["http"], r["in_process"]
    main = h["target_rate"]
    mem = h["server_after_load"]
    out: dict[str, Any] = {
        "http_p50_ms": main.get("p50_ms"),
        "http_p99_ms": main.get("p99_ms"),
        "http_errors": main["errors"],
        "max_sustainable_rps": h["max_sustainable_rps"],
        "rank_p50_ms": ip["rank"]["p50_ms"],
        "rank_p99_ms": ip["rank"]["p99_ms"],
        "handler_p50_ms": ip["handler"]["p50_ms"],
        "handler_p99_ms": ip["handler"]["p99_ms"],
        "asgi_p50_ms": ip["asgi"]["p50_ms"],
        "asgi_p99_ms": ip["asgi"]["p99_ms"],
        "server_cpu_ms_per_request": main["server_cpu_ms_per_request"],
        "recall@100_served": r["build"]["recall_served"],
        "server_processes": len(mem["processes"]),
        "server_rss_mb_total": mem["VmRSS"],
        "server_peak_rss_mb_largest_process": mem["VmHWM"],
        "pass": {
            "p50": main.get("p50_ms", 1e9) <= TARGET_P50_MS,
            "p99": main.get("p99_ms", 1e9) <= TARGET_P99_MS,
            "no_errors": main["errors"] == 0,
            "recall": r["build"]["recall_served"] >= TARGET_RECALL,
            "memory": mem["VmHWM"] < TARGET_RSS_MB,
        },
    }
    if "http_floor" in r:
        out["floor"] = floor_summary(r)
    return out


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = r["http"]["steps"]
    rates = [s["offered_rps"] for s in steps]
    for q, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
        ax1.plot(rates, [s[f"{q}_ms"] for s in steps], style, label=f"HTTP {q}")
    main = r["http"]["target_rate"]
    ax1.plot(
        [main["offered_rps"]] * 2, [main["p50_ms"], main["p99_ms"]], "k*", ms=10, label="60 s run p50/p99"
    )
    ax1.axhline(TARGET_P99_MS, color="red", ls="--", lw=1, label=f"p99 target {TARGET_P99_MS:g} ms")
    ax1.axhline(TARGET_P50_MS, color="orange", ls=":", lw=1, label=f"p50 target {TARGET_P50_MS:g} ms")
    ax1.set_yscale("log")
    ax1.set_xlabel("offered rate (requests/s, open loop)")
    ax1.set_ylabel("latency from scheduled send (ms)")
    ax1.set_title(
        f"GET /v1/feed, {r['config']['items']:,} items, {r['config'].get('workers', 1)} worker(s); "
        f"max within budget {r['http']['max_sustainable_rps']:g}/s",
        fontsize=10,
    )
    ax1.legend(fontsize=8)
    ip = r["in_process"]
    labels = ["rank()", "handler\n(+Redis)", "ASGI app\n(no socket)", f"HTTP @{main['offered_rps']:g}/s"]
    p50 = [ip["rank"]["p50_ms"], ip["handler"]["p50_ms"], ip["asgi"]["p50_ms"], main["p50_ms"]]
    p99 = [ip["rank"]["p99_ms"], ip["handler"]["p99_ms"], ip["asgi"]["p99_ms"], main["p99_ms"]]
    x = np.arange(len(labels))
    ax2.bar(x - 0.2, p50, 0.4, label="p50")
    ax2.bar(x + 0.2, p99, 0.4, label="p99")
    for xi, (a, b) in enumerate(zip(p50, p99, strict=True)):
        ax2.annotate(f"{a:.1f}", (xi - 0.2, a), ha="center", va="bottom", fontsize=8)
        ax2.annotate(f"{b:.1f}", (xi + 0.2, b), ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(x, labels)
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log)")
    load = r["machine"]["loadavg_start"][0]
    ax2.set_title(f"one feed, layer by layer (load avg {load:.1f} on {r['machine']['cpus']} cores)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`kolfeed bench sizing RUN`: the per-unit figures docs/SCALING.md multiplies out to 100M users and 10M
items, measured here rather than assumed.

- Retrieval: IVF-PQ (``MIPS,IVF<lists>,PQ<m>``) over a trained run's item embeddings, recall@100 against
  the exact inner-product top 100 for the run's own user embeddings, per nprobe; bytes per item of the
  index. 10M items are out of reach of this machine, so the recall is measured on the run's catalogue
  (and on a resampled catalogue 4x larger, items plus small noise) and the sizes are extrapolated.
- Online state: users with a realistic day of activity written through the Redis feature store into
  the given db; bytes per user = sum of ``MEMORY USAGE`` over that user's keys (the db is private to the
  caller, so other tenants of the server do not count), then emptied again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys import artifacts as art


def index_figures(run_dir: Path, queries: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Recall@100 and bytes per item of IVF-PQ over the run's items (and a 4x resampled catalogue).

    PQ codes use one byte per 4 dimensions of the MIPS-augmented vector (``mips_dim(d) / 4``)."""
    import faiss

    from recsys.index import build_index, exact_recall, mips_dim, set_search_params, set_search_threads

    set_search_threads(1)  # one OpenMP thread: spinning threads on a shared, loaded machine cost more
    items = art.load_array(run_dir / art.ITEM_EMB).astype(np.float32)
    pq_m = mips_dim(items.shape[1]) // 4
    users = art.load_array(run_dir / art.USER_EMB).astype(np.float32)
    rng = np.random.default_rng(seed)
    active = users[np.linalg.norm(users, axis=1) > 0]
    q = active[rng.choice(len(active), size=min(queries, len(active)), replace=False)]
    scale = float(np.std(items))
    bigger = items[rng.integers(0, len(items), 4 * len(items))]
    bigger = bigger + rng.normal(0.0, 0.1 * scale, bigger.shape).astype(np.float32)
    out: dict[str, Any] = {"dim": int(items.shape[1]), "pq_m": pq_m, "queries": len(q), "catalogues": []}
    for name, xb in (("run items", items), ("4x resampled", bigger)):
        lists = int(2 ** round(np.log2(max(64, 4 * np.sqrt(len(xb))))))
        factory = f"MIPS,IVF{lists},PQ{pq_m}"
        t0 = time.perf_counter()
        index = build_index(xb, factory, seed=seed)
        build_s = time.perf_counter() - t0
        path = run_dir.parent / f".sizing-{os.getpid()}.faiss"
        faiss.write_index(index, str(path))
        size = path.stat().st_size
        path.unlink()
        sweep = []
        for nprobe in (8, 16, 32, 64, 128):
            if nprobe > lists:
                break
            set_search_params(index, nprobe=nprobe)
            t0 = time.perf_counter()
            recall = exact_recall(index, xb, q, 100)
            sweep.append(
                {"nprobe": nprobe, "recall@100": round(recall, 4), "seconds": time.perf_counter() - t0}
            )
        out["catalogues"].append(
            {
                "name": name,
                "items": len(xb),
                "factory": factory,
                "index_bytes": size,
                "bytes_per_item": size / len(xb),
                "build_seconds": build_s,
                "sweep": sweep,
            }
        )
    return out


def _day_of_events(user: int, rng: np.random.Generator, n_items: int, n_kols: int) -> list[Any]:
    from features.base import StoreEvent

    now = time.time()
    actions = ["impression"] * 60 + ["click"] * 20 + ["like"] * 4 + ["cart"] * 2 + ["share"] * 2 + ["buy"] * 2
    events = []
    for j, action in enumerate(actions):
        events.append(
            StoreEvent(
                ts=now - 3600 + j,
                user_id=user,
                item_id=int(rng.integers(n_items)),
                action=action,
                kol_id=int(rng.integers(n_kols)),
                category="beauty",
                to_user_id=int(rng.integers(1_000_000)) if action == "share" else None,
            )
        )
    return events


async def _redis_bytes(url: str, users: int, seed: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from features.factory import open_store

    prefix = f"kfsizing{os.getpid()}:"
    store = open_store(url, prefix=prefix)
    client = aioredis.Redis.from_url(url)
    rng = np.random.default_rng(seed)
    try:
        for start in range(0, users, 100):
            batch = [
                e
                for u in range(start, min(users, start + 100))
                for e in _day_of_events(u, rng, 1_000_000, 50_000)
            ]
            await store.record_events(batch)
        user_bytes = shared_bytes = user_keys = 0
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            size = int(await client.memory_usage(key, samples=0) or 0)
            if key.decode().startswith(f"{prefix}u:"):
                user_bytes += size
                user_keys += 1
            else:
                shared_bytes += size
    finally:
        await store.clear()
        await store.close()
        await client.aclose()
    return {
        "users": users,
        "events_per_user": 90,
        "user_keys": user_keys,
        "bytes_per_user": user_bytes / users,
        "shared_bytes": shared_bytes,
    }


def run(run_dir: Path, redis_url: str, users: int, results: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_dir": str(run_dir),
        "loadavg_start": list(os.getloadavg()),
    }
    report["index"] = index_figures(run_dir)
    report["redis"] = asyncio.run(_redis_bytes(redis_url, users, 0))
    report["loadavg_end"] = list(os.getloadavg())
    results.mkdir(parents=True, exist_ok=True)
    (results / "sizing.json").write_text(json.dumps(report, indent=2))
    plot(report, results / "sizing.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for cat in report["index"]["catalogues"]:
        xs = [s["nprobe"] for s in cat["sweep"]]
        ax.plot(
            xs,
            [s["recall@100"] for s in cat["sweep"]],
            marker="o",
            label=f"{cat['items']:,} items ({cat['factory']})",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("nprobe")
    ax.set_ylabel("recall@100 vs exact inner product")
    ax.set_title(f"IVF-PQ on ALS item embeddings ({report['index']['pq_m']} bytes/vector codes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`kolfeed bench scale`: the shipped Gowalla config with only ``data.path`` changed, on a generated
LightGCN-format split at the largest size the training issue names (~100k users x 100k items x 3M
interactions): whole-run wall time and peak RSS against the 15-minute / 8 GB budget, and quality
against popularity on the same split.

The split has structure (users follow a few interest clusters, items have Zipf popularity within
their cluster) so that "does well" means something; a uniformly random split has nothing to learn.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from kolfeed.bench.machine import report_header
from kolfeed.bench.train import BenchError, metrics_of, run_train_child, train_args
from recsys import artifacts as art

BUDGET_SECONDS = 15 * 60
BUDGET_RSS_MB = 8 * 1024


def structured_split(
    out: Path,
    n_users: int,
    n_items: int,
    nnz: int,
    clusters: int = 400,
    in_cluster: float = 0.85,
    test_ratio: float = 0.2,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``train.txt``/``test.txt`` (LightGCN format) of a clustered power-law interaction graph."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, clusters, n_items)
    item_weight = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.7  # global Zipf rank
    order = np.lexsort((-item_weight, item_cluster))  # items grouped by cluster
    w = item_weight[order]
    c = item_cluster[order]
    block_sum = np.bincount(c, weights=w, minlength=clusters)
    within = np.cumsum(w) - np.concatenate([[0.0], np.cumsum(block_sum)[:-1]])[c]
    cdf_in = c + within / np.maximum(block_sum[c], 1e-12)  # cluster k spans (k, k+1]
    cdf_all = np.cumsum(item_weight) / item_weight.sum()

    activity = rng.lognormal(0.0, 0.8, n_users)
    activity /= activity.sum()
    interests = rng.integers(0, clusters, (n_users, 3))

    def draw(k: int) -> np.ndarray:
        """k (user, item) draws, encoded as user * n_items + item."""
        user_of = rng.choice(n_users, size=k, p=activity)
        cluster_of = interests[user_of, rng.choice(3, size=k, p=[0.6, 0.3, 0.1])]
        local = rng.random(k) < in_cluster
        r = rng.random(k)
        pos = np.where(
            local,
            np.searchsorted(cdf_in, np.asarray(cluster_of + r, dtype=np.float64)),
            np.searchsorted(cdf_all, np.asarray(r, dtype=np.float64)),
        )
        chosen = np.where(local, order[np.minimum(pos, n_items - 1)], np.minimum(pos, n_items - 1))
        return np.asarray(user_of, dtype=np.int64) * n_items + chosen

    pairs = np.unique(draw(int(nnz * 1.2)))
    for _ in range(8):  # popular pairs repeat: draw more until there are enough distinct ones
        if len(pairs) >= nnz:
            break
        pairs = np.unique(np.concatenate([pairs, draw(int((nnz - len(pairs)) * 2) + 1000)]))
    pairs = pairs[rng.permutation(len(pairs))[:nnz]]
    users, items = pairs // n_items, pairs % n_items
    is_test = rng.random(len(pairs)) < test_ratio
    out.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train.txt", ~is_test), ("test.txt", is_test)):
        u, i = users[mask], items[mask]
        o = np.lexsort((i, u))
        u, i = u[o], i[o]
        bounds = np.flatnonzero(np.diff(u)) + 1
        lines = [
            f"{int(grp_u[0])} " + " ".join(map(str, grp_i.tolist()))
            for grp_u, grp_i in zip(np.split(u, bounds), np.split(i, bounds), strict=True)
            if len(grp_u)
        ]
        (out / name).write_text("\n".join(lines) + "\n")
    return {"users": int(np.unique(users).shape[0]), "items": n_items, "interactions": len(pairs)}


def run(config: Path, n_users: int, n_items: int, nnz: int, results: Path, seed: int = 0) -> dict[str, Any]:
    results.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = report_header(
        config=str(config), budget={"wall_seconds": BUDGET_SECONDS, "peak_rss_mb": BUDGET_RSS_MB}
    )
    with tempfile.TemporaryDirectory(prefix="kolfeed-bench-scale-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        report["split"] = structured_split(work / "split", n_users, n_items, nnz, seed=seed)
        report["split"]["generate_seconds"] = time.perf_counter() - t0
        print(f"[bench scale] split: {report['split']}", file=sys.stderr, flush=True)
        rows: list[dict[str, Any]] = []
        for label, sets in (("graphfilter (gowalla.yaml)", []), ("popularity", ["model.name=popularity"])):
            args = train_args(
                config, work / "runs", work / "split", [*sets, *(["model.params={}"] if sets else [])]
            )
            print(f"[bench scale] {label} ...", file=sys.stderr, flush=True)
            child = run_train_child(args, work, f"scale{len(rows)}")
            m = art.verify_run_dir(child["run_dir"])
            rows.append(
                {
                    "model": label,
                    **metrics_of(
                        m.metrics, ("recall@20", "ndcg@20", "eval_users", "fit_seconds", "eval_seconds")
                    ),
                    "run_wall_seconds": child["wall_seconds"],
                    "peak_rss_mb": child["peak_rss_mb"],
                }
            )
            print(f"[bench scale]   {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
        report["rows"] = rows
    report["loadavg_end"] = list(os.getloadavg())
    best = report["rows"][0]
    report["within_budget"] = bool(
        best["run_wall_seconds"] <= BUDGET_SECONDS and best["peak_rss_mb"] <= BUDGET_RSS_MB
    )
    (results / "scale.json").write_text(json.dumps(report, indent=2))
    plot(report, results / "scale.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    labels = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(labels, [r["recall@20"] for r in rows], color=["#2563eb", "#9ca3af"])
    axes[0].set_title("Recall@20")
    axes[1].bar(labels, [r["run_wall_seconds"] / 60 for r in rows], color=["#2563eb", "#9ca3af"])
    axes[1].axhline(BUDGET_SECONDS / 60, color="red", linestyle="--", label="budget")
    axes[1].set_title("whole run (minutes)")
    axes[1].legend()
    axes[2].bar(labels, [r["peak_rss_mb"] / 1024 for r in rows], color=["#2563eb", "#9ca3af"])
    axes[2].axhline(BUDGET_RSS_MB / 1024, color="red", linestyle="--", label="budget")
    axes[2].set_title("peak RSS (GB)")
    axes[2].legend()
    s = report["split"]
    fig.suptitle(
        f"gowalla.yaml on a {s['users']:,} users x {s['items']:,} items x {s['interactions']:,} split "
        f"({report['machine_cores']} cores)"
    )
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["BenchError", "run", "structured_split"]

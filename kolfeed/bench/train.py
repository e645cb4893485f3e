"""Benchmark of the training pipeline (`kolfeed bench train`).

(a) Gowalla: the whole ``kolfeed train configs/train/gowalla.yaml`` run (load → export), each in its
    own child process so wall time and peak RSS (``os.wait4``'s ``ru_maxrss`` of that child) belong to
    that run alone; popularity and ALS (registry defaults) run the same way, side by side.
(b) A small synthetic world: the behaviour-weighted graph (click+share+buy) vs clicks only, scored by
    recall@20 of held-out buys, on identical held-out sets and masks.

Results: ``bench/results/train.json`` and ``train.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kolfeed.bench.machine import report_header
from recsys import artifacts as art

GOWALLA_VARIANTS: list[tuple[str, list[str]]] = [
    ("graphfilter (gowalla.yaml)", []),
    ("popularity", ["model.name=popularity", "model.params={}"]),
    ("als", ["model.name=als", "model.params={}"]),
]

WORLD_VARIANTS: list[tuple[str, list[str]]] = [
    ("click+share+buy", ["click", "share", "buy"]),
    ("click only", ["click"]),
]


class BenchError(RuntimeError):
    """The benchmark cannot run (missing data, a failed child run)."""


def train_args(config: Path, out: Path, data: Path, sets: Sequence[str] = ()) -> list[str]:
    """``kolfeed train CONFIG --out OUT --set data.path=DATA [--set S ...]`` as an argument list."""
    args = ["train", str(config), "--out", str(out), "--set", f"data.path={data}"]
    for s in sets:
        args += ["--set", s]
    return args


def metrics_of(metrics: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The named figures of a run's manifest metrics (None where the run did not record one)."""
    return {key: metrics.get(key) for key in keys}


def run_train_child(args: list[str], log_dir: Path, tag: str) -> dict[str, Any]:
    """Run ``kolfeed train ...`` in a child process; return wall seconds, peak RSS and the run dir."""
    out_path = log_dir / f"{tag}.stdout"
    err_path = log_dir / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "kolfeed.cli", *args], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"`kolfeed {' '.join(args)}` failed ({proc.returncode}): {' | '.join(tail)}")
    run_dir = Path(out_path.read_text().strip().splitlines()[-1])
    return {"wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "run_dir": run_dir}


def bench_gowalla(config: Path, data: Path, work: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, (label, sets) in enumerate(GOWALLA_VARIANTS):
        args = train_args(config, work / "runs", data, sets)
        print(f"[bench train] gowalla: {label} ...", file=sys.stderr, flush=True)
        child = run_train_child(args, work, f"gowalla{i}")
        m = art.verify_run_dir(child["run_dir"])
        rows.append(
            {
                "model": label,
                **metrics_of(
                    m.metrics, ("recall@20", "ndcg@20", "fit_seconds", "eval_seconds", "load_seconds")
                ),
                "run_wall_seconds": child["wall_seconds"],
                "peak_rss_mb": child["peak_rss_mb"],
                "params": m.config["model"]["params"],
            }
        )
        print(f"[bench train]   {json.dumps(rows[-1], default=str)}", file=sys.stderr, flush=True)
    return rows


def bench_world(configs: list[Path], scale: str, seed: int, work: Path) -> dict[str, Any]:
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world
    from training.config import load_config
    from training.run import train

    world_dir = work / f"world_{scale}"
    print(f"[bench train] generating world --scale {scale} --seed {seed} ...", file=sys.stderr, flush=True)
    report = generate_world(scale_config(scale), seed, world_dir, scale=scale, progress=False)
    rows: list[dict[str, Any]] = []
    for config in configs:
        for label, behaviours in WORLD_VARIANTS:
            sets = [f"data.path={world_dir}", f"graphs.behaviours={json.dumps(behaviours)}"]
            cfg = load_config(config, sets)
            print(f"[bench train] world: {cfg.model.name} / {label} ...", file=sys.stderr, flush=True)
            result = train(cfg, work / "world_runs", quiet=True)
            m = result.metrics
            rows.append(
                {
                    "model": cfg.model.name,
                    "graph": label,
                    "buy_recall@20": m.get("buy/recall@20"),
                    "buy_ndcg@20": m.get("buy/ndcg@20"),
                    "recall@20": m.get("recall@20"),
                    "share_recall@20": m.get("share/recall@20"),
                    "fit_seconds": m.get("fit_seconds"),
                }
            )
            print(f"[bench train]   {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    return {"scale": scale, "seed": seed, "counts": dict(report.counts), "rows": rows}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    g = result.get("gowalla", {}).get("rows", [])
    if g:
        labels = [r["model"].split(" ")[0] for r in g]
        x = range(len(g))
        axes[0].bar([i - 0.2 for i in x], [r["recall@20"] for r in g], 0.4, label="recall@20")
        axes[0].bar([i + 0.2 for i in x], [r["ndcg@20"] for r in g], 0.4, label="ndcg@20")
        axes[0].set_xticks(list(x), labels)
        axes[0].set_title("Gowalla: quality")
        axes[0].legend()
        axes[1].bar([i - 0.2 for i in x], [r["fit_seconds"] for r in g], 0.4, label="fit s")
        axes[1].bar([i + 0.2 for i in x], [r["run_wall_seconds"] for r in g], 0.4, label="whole run s")
        for i, r in enumerate(g):
            axes[1].text(i, r["run_wall_seconds"], f"{r['peak_rss_mb']:.0f} MB", ha="center", va="bottom")
        axes[1].set_xticks(list(x), labels)
        axes[1].set_title("Gowalla: time (label: peak RSS of the run)")
        axes[1].legend()
    w = result.get("world", {}).get("rows", [])
    if w:
        models = sorted({r["model"] for r in w})
        graphs = [v[0] for v in WORLD_VARIANTS]
        width = 0.8 / len(graphs)
        for j, graph in enumerate(graphs):
            vals = [
                next((r["buy_recall@20"] or 0.0 for r in w if r["model"] == m and r["graph"] == graph), 0.0)
                for m in models
            ]
            axes[2].bar(
                [i + (j - (len(graphs) - 1) / 2) * width for i in range(len(models))],
                vals,
                width,
                label=graph,
            )
        axes[2].set_xticks(range(len(models)), models)
        axes[2].set_title(f"world ({result['world']['scale']}): recall@20 of held-out buys")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    gowalla_config: Path,
    gowalla_data: Path,
    world_configs: list[Path],
    scale: str,
    seed: int,
    results: Path,
    skip_gowalla: bool = False,
) -> dict[str, Any]:
    results.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = report_header()
    with tempfile.TemporaryDirectory(prefix="kolfeed-bench-train-") as tmp:
        work = Path(tmp)
        if not skip_gowalla:
            if not (gowalla_data / "train.txt").is_file():
                raise BenchError(f"{gowalla_data}: no train.txt (LightGCN split expected)")
            out["gowalla"] = {
                "config": str(gowalla_config),
                "data": str(gowalla_data),
                "rows": bench_gowalla(gowalla_config, gowalla_data, work),
            }
        out["world"] = bench_world(world_configs, scale, seed, work)
    (results / "train.json").write_text(json.dumps(out, indent=2, default=str))
    plot(out, results / "train.png")
    return out

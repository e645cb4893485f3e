"""Benchmark of `kolfeed tune` (`kolfeed bench tune`): does tuning on the data beat fixed configs?

Per dataset, exactly what a user runs, each step in its own child process (wall seconds, CPU seconds
and peak RSS from ``os.wait4`` belong to that step alone):

    kolfeed tune configs/train/auto.yaml --set data.path=X --set data.format=F --out W/tune
    kolfeed train W/tune/best.yaml --out W/runs

beside ``kolfeed train`` of the baselines on the same split: the shipped Gowalla config, popularity,
implicit ALS with the library's defaults (untuned), GF-CF with its paper's setting (256 factors,
alpha 0.3) and the pure SVD (ideal low-pass) filter. Test Recall@20 / NDCG@20 come from each run's
metrics; ratios to GF-CF of the same run are the machine-stable figures. The load average is recorded
before and after each dataset because the machine is shared.

Results: ``bench/results/tune_<datasets>.json`` and ``.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTO = "configs/train/auto.yaml"
SHIPPED = "configs/train/gowalla.yaml"

BASELINES: list[tuple[str, str, list[str]]] = [
    ("shipped gowalla.yaml", SHIPPED, []),
    ("popularity", AUTO, ["model.name=popularity", "model.params={}"]),
    (
        "ALS, implicit defaults",
        AUTO,
        ["model.name=als", "model.params={factors: 100, regularization: 0.01, alpha: 1.0, iterations: 15}"],
    ),
    (
        "GF-CF, paper setting",
        AUTO,
        ["model.params={factors: 256, ideal_weight: 0.3, blur_time: 1.0, sharpen_time: 0.0}"],
    ),
    (
        "SVD filter (ideal low-pass)",
        AUTO,
        ["model.params={factors: 256, ideal_weight: 1.0, blur_time: 0.0, sharpen_time: 0.0}"],
    ),
]


class BenchTuneError(RuntimeError):
    """A child step failed or the data is missing (message names the step)."""


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    format: str

    @classmethod
    def parse(cls, text: str) -> Dataset:
        """``NAME=PATH:FORMAT``, e.g. ``gowalla=../shared/data/gowalla:lightgcn``."""
        name, eq, rest = text.partition("=")
        path, colon, fmt = rest.rpartition(":")
        if not eq or not colon or not name or not path or not fmt:
            raise BenchTuneError(f"--data {text!r}: expected NAME=PATH:FORMAT")
        if not Path(path).exists():
            raise BenchTuneError(f"--data {text!r}: {path} does not exist")
        return cls(name, Path(path), fmt)


def run_child(args: list[str], log_dir: Path, tag: str) -> dict[str, Any]:
    """Run ``kolfeed ARGS`` as a child; wall and CPU seconds, peak RSS and the last stdout line."""
    out_path, err_path = log_dir / f"{tag}.stdout", log_dir / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "kolfeed.cli", *args], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise BenchTuneError(f"`kolfeed {' '.join(args)}` failed ({code}): {' | '.join(tail)}")
    lines = out_path.read_text().strip().splitlines()
    return {
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "last_line": lines[-1] if lines else "",
    }


def _metrics(run_dir: Path) -> dict[str, float]:
    metrics: dict[str, float] = json.loads((run_dir / "metrics.json").read_text())
    return metrics


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_dataset(ds: Dataset, work: Path, timeout: float | None, say: Any) -> dict[str, Any]:
    data_sets = [f"data.path={ds.path.resolve()}", f"data.format={ds.format}"]
    sets = [a for s in data_sets for a in ("--set", s)]
    load_before = _load()
    rows: list[dict[str, Any]] = []
    tune_dir = work / f"{ds.name}-tune"
    say(f"{ds.name}: kolfeed tune")
    tune_args = ["tune", AUTO, *sets, "--out", str(tune_dir), "--quiet"]
    if timeout is not None:
        tune_args += ["--timeout", str(timeout)]
    tuned = run_child(tune_args, work, f"{ds.name}-tune")
    say(f"{ds.name}: kolfeed train best.yaml")
    final = run_child(
        ["train", str(tune_dir / "best.yaml"), "--out", str(work / "runs"), "--quiet"],
        work,
        f"{ds.name}-final",
    )
    summary = json.loads((tune_dir / "tune.json").read_text())
    m = _metrics(Path(final["last_line"]))
    rows.append(
        {
            "method": "kolfeed tune + train (auto.yaml)",
            "recall@20": m["recall@20"],
            "ndcg@20": m["ndcg@20"],
            "wall_seconds": tuned["wall_seconds"] + final["wall_seconds"],
            "cpu_seconds": tuned["cpu_seconds"] + final["cpu_seconds"],
            "peak_rss_mb": max(tuned["peak_rss_mb"], final["peak_rss_mb"]),
            "tune_wall_seconds": tuned["wall_seconds"],
            "train_wall_seconds": final["wall_seconds"],
            "model": summary["best"]["model"],
            "params": summary["best"]["params"],
        }
    )
    for i, (label, config, extra) in enumerate(BASELINES):
        say(f"{ds.name}: {label}")
        args = ["train", config, *sets, *[a for s in extra for a in ("--set", s)]]
        if config == SHIPPED and ds.format != "lightgcn":
            args += ["--set", "eval.per_behaviour=false"]
        res = run_child([*args, "--out", str(work / "runs"), "--quiet"], work, f"{ds.name}-base{i}")
        m = _metrics(Path(res["last_line"]))
        rows.append(
            {
                "method": label,
                "recall@20": m["recall@20"],
                "ndcg@20": m["ndcg@20"],
                "wall_seconds": res["wall_seconds"],
                "cpu_seconds": res["cpu_seconds"],
                "peak_rss_mb": res["peak_rss_mb"],
            }
        )
    ref = next(r for r in rows if r["method"].startswith("GF-CF"))
    for r in rows:
        r["recall_vs_gfcf"] = r["recall@20"] / ref["recall@20"] if ref["recall@20"] else float("nan")
        r["ndcg_vs_gfcf"] = r["ndcg@20"] / ref["ndcg@20"] if ref["ndcg@20"] else float("nan")
    tuned_row = rows[0]
    rivals = [r for r in rows[1:] if not r["method"].startswith("shipped")]
    return {
        "dataset": ds.name,
        "path": str(ds.path),
        "format": ds.format,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "rows": rows,
        "tune": {
            k: summary[k] for k in ("trials", "stopped_by", "tune_seconds", "budget_seconds", "validation")
        },
        "tuned_beats_gfcf_als_svd_on_both": all(
            tuned_row["recall@20"] > r["recall@20"] and tuned_row["ndcg@20"] > r["ndcg@20"]
            for r in rivals
            if r["method"] != "popularity"
        ),
        "within_15_minutes": tuned_row["wall_seconds"] <= 900,
    }


def _plot(report: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = report["datasets"]
    fig, axes = plt.subplots(len(sets), 2, figsize=(13, 3.6 * len(sets)), squeeze=False)
    for row_axes, ds in zip(axes, sets, strict=True):
        names = [r["method"] for r in ds["rows"]]
        y = np.arange(len(names))
        ax = row_axes[0]
        ax.barh(y - 0.2, [r["recall@20"] for r in ds["rows"]], 0.4, label="Recall@20")
        ax.barh(y + 0.2, [r["ndcg@20"] for r in ds["rows"]], 0.4, label="NDCG@20")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{ds['dataset']}: test quality")
        ax.legend(fontsize=7)
        ax = row_axes[1]
        ax.barh(y, [r["wall_seconds"] for r in ds["rows"]], 0.4, label="wall s")
        ax.barh(y + 0.4, [r["cpu_seconds"] for r in ds["rows"]], 0.4, label="CPU s")
        ax.axvline(900, color="red", ls="--", lw=0.8, label="15 min")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{ds['dataset']}: seconds (load avg {ds['load_average_before'][0]} before)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def run(
    datasets: list[Dataset], results: Path, timeout: float | None, workdir: Path | None, say: Any
) -> dict[str, Any]:
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(["kolfeed", *sys.argv[1:]]),
            "datasets": [bench_dataset(ds, work, timeout, say) for ds in datasets],
        }
    stem = "tune_" + "_".join(ds.name for ds in datasets)
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    _plot(report, results / f"{stem}.png")
    return report

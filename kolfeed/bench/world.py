"""Benchmark of the world generator: wall time per phase, events/s and peak RSS per scale.

Why: ``--scale small`` (~1M events) must stay under a minute on the 2-core reference machine,
because ``make demo`` and CI generate it. Scales run side by side in one process; peak RSS is the
process high-water mark (``resource.getrusage``), so it is cumulative over the scales run so far.
"""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

SMALL_BUDGET_S = 60.0


def run(scales: list[str], seed: int, results_dir: Path) -> dict[str, Any]:
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world

    rows: list[dict[str, Any]] = []
    for scale in scales:
        tmp = Path(tempfile.mkdtemp(prefix=f"kolfeed-world-{scale}-"))
        try:
            t0 = time.perf_counter()
            report = generate_world(scale_config(scale), seed, tmp, scale=scale, progress=True)
            wall = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        n_ev = report.counts["events"]
        rows.append(
            {
                "scale": scale,
                "seed": seed,
                "wall_s": round(wall, 3),
                "events": n_ev,
                "events_per_s": round(n_ev / wall, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "bytes_on_disk": size,
                "phases_s": {k: round(v, 3) for k, v in report.phases.items()},
                "counts": report.counts,
            }
        )
    small = next((r for r in rows if r["scale"] == "small"), None)
    result = {
        "benchmark": "world",
        "rows": rows,
        "small_budget_s": SMALL_BUDGET_S,
        "small_within_budget": None if small is None else small["wall_s"] < SMALL_BUDGET_S,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "world.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, results_dir / "world.png")
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["scale"] for r in rows]
    bottom = [0.0] * len(rows)
    for phase in ("entities", "write_static", "events"):
        vals = [r["phases_s"].get(phase, 0.0) for r in rows]
        ax1.bar(names, vals, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    if "small" in names:
        ax1.axhline(SMALL_BUDGET_S, color="red", linestyle="--", label=f"small budget {SMALL_BUDGET_S:.0f} s")
    ax1.set_ylabel("seconds")
    ax1.set_title("world generation time by phase")
    ax1.legend()
    ax2.bar(names, [r["events_per_s"] for r in rows], color="tab:green")
    for i, r in enumerate(rows):
        ax2.text(
            i, r["events_per_s"], f"{r['events']:,} ev\n{r['peak_rss_mb']:.0f} MB", ha="center", va="bottom"
        )
    ax2.set_ylim(0, 1.3 * max(r["events_per_s"] for r in rows))
    ax2.set_ylabel("events / s")
    ax2.set_title("throughput (label: events, peak RSS)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

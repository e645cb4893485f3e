"""Benchmark of `kolfeed data import` on a large synthetic shop CSV: wall and CPU time, peak memory.

Why a child process per measurement: peak RSS (``ru_maxrss`` from ``wait4``) is then the import's own
high-water mark, not this process's. Beside the import, the same file is read once with pyarrow's
CSV reader (all columns as text) in a child too: the ratio import / plain read is stable across
machines, the absolute seconds are not.

The file: customers ``cust-<n>`` (a heavy-tailed activity), SKUs ``SKU-<n>`` (Zipf-like popularity),
``view``/``favorite``/``add_to_cart``/``purchase``/``page_view`` events, millisecond timestamps
roughly in order with local shuffling, ~1% exact duplicate rows and an ignored ``session`` column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from recsys.world.shop_export import IMPORT_ACTIONS, IMPORT_MAP

EVENT_NAMES = ("view", "favorite", "add_to_cart", "purchase", "page_view")
EVENT_SHARES = (0.70, 0.08, 0.12, 0.06, 0.04)
CHUNK_ROWS = 1_000_000
START_MS = 1_704_067_200_000
SPAN_MS = 90 * 86_400_000


def write_shop_csv(path: Path, n_events: int, seed: int = 0) -> int:
    """A synthetic shop export of ``n_events`` rows (plus ~1% duplicates); returns rows written."""
    rng = np.random.default_rng(seed)
    n_users = max(10, n_events // 20)
    n_items = max(10, n_events // 50)
    written = 0
    with pcsv.CSVWriter(
        str(path),
        pa.schema(
            [
                ("customer_id", pa.string()),
                ("sku", pa.string()),
                ("event_type", pa.string()),
                ("timestamp", pa.int64()),
                ("session", pa.int64()),
            ]
        ),
    ) as writer:
        for start in range(0, n_events, CHUNK_ROWS):
            n = min(CHUNK_ROWS, n_events - start)
            users = (rng.pareto(1.2, n) * n_users / 20).astype(np.int64) % n_users
            items = (rng.zipf(1.3, n) - 1) % n_items
            kinds = rng.choice(len(EVENT_NAMES), n, p=EVENT_SHARES)
            ts = START_MS + (start + np.arange(n)) * (SPAN_MS // max(1, n_events))
            ts = ts + rng.integers(-60_000, 60_000, n)  # out of order within a minute
            dup = rng.random(n) < 0.01
            take = np.concatenate([np.arange(n), np.flatnonzero(dup)])
            take.sort(kind="stable")
            table = pa.table(
                {
                    "customer_id": pc.binary_join_element_wise(
                        "cust-", pa.array(users[take]).cast(pa.string()), ""
                    ),
                    "sku": pc.binary_join_element_wise("SKU-", pa.array(items[take]).cast(pa.string()), ""),
                    "event_type": pa.array(np.asarray(EVENT_NAMES)[kinds[take]]),
                    "timestamp": pa.array(ts[take]),
                    "session": pa.array(rng.integers(0, 1 << 40, len(take))),
                }
            )
            writer.write_table(table)
            written += table.num_rows
    return written


_IMPORT = """
import sys
from pathlib import Path
from recsys.io.shop_import import ImportOptions, action_map, column_map, import_shop
events, out, columns, actions = sys.argv[1:5]
r = import_shop(ImportOptions(events=Path(events), out=Path(out), columns=column_map(columns),
                actions=action_map(actions), overwrite=True))
import json; print(json.dumps(r.to_dict()))
"""
_READ = """
import sys, json, pyarrow as pa, pyarrow.csv as pcsv
names = pcsv.open_csv(sys.argv[1]).schema.names
text = pcsv.ConvertOptions(column_types={n: pa.string() for n in names})
t = pcsv.read_csv(sys.argv[1], convert_options=text)
print(json.dumps({"rows": t.num_rows}))
"""


def _child(code: str, args: list[str]) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; wall and CPU seconds, peak RSS and its JSON output."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed with exit code {proc.returncode}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "output": json.loads(out.decode().strip().splitlines()[-1]),
    }


def run(n_events: int, results_dir: Path, workdir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    tmp = Path(workdir or tempfile.mkdtemp(prefix="kolfeed-bench-import-"))
    tmp.mkdir(parents=True, exist_ok=True)
    csv_path = tmp / "events.csv"
    t0 = time.perf_counter()
    rows = write_shop_csv(csv_path, n_events, seed)
    gen_s = time.perf_counter() - t0
    read = _child(_READ, [str(csv_path)])
    imported = _child(_IMPORT, [str(csv_path), str(tmp / "dataset"), IMPORT_MAP, IMPORT_ACTIONS])
    report = imported.pop("output")
    read.pop("output")
    result = {
        "benchmark": "import",
        "events_rows": rows,
        "csv_bytes": csv_path.stat().st_size,
        "generate_s": round(gen_s, 1),
        "import": imported,
        "plain_csv_read": read,
        "import_over_plain_read_cpu": round(imported["cpu_s"] / max(read["cpu_s"], 1e-9), 2),
        "import_over_plain_read_rss": round(imported["peak_rss_mb"] / max(read["peak_rss_mb"], 1e-9), 2),
        "rows_per_cpu_s": round(rows / max(imported["cpu_s"], 1e-9)),
        "report": {k: report[k] for k in ("rows_read", "rows_kept", "skipped", "users", "items", "split")},
        "load_average": os.getloadavg(),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "import.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, results_dir / "import.png")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    names = ["plain CSV read", "data import"]
    parts = [result["plain_csv_read"], result["import"]]
    ax1.bar(names, [p["cpu_s"] for p in parts], label="CPU s", color="tab:blue")
    ax1.bar(names, [p["wall_s"] for p in parts], fill=False, edgecolor="black", label="wall s")
    ax1.set_ylabel("seconds")
    ax1.set_title(f"{result['events_rows']:,} events ({result['csv_bytes'] / 1e9:.2f} GB CSV)")
    ax1.legend()
    ax2.bar(names, [p["peak_rss_mb"] for p in parts], color="tab:orange")
    ax2.set_ylabel("peak RSS (MB)")
    ax2.set_title("peak memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_behaviours(scale: str, seed: int, results_dir: Path, workdir: Path | None = None) -> dict[str, Any]:
    """The stand-in acceptance, measured: a world written as a shop's export, imported with the
    README's flags, trained with ``configs/train/world_als.yaml`` on all behaviours and on purchases
    alone; Recall@20 on held-out purchases (``buy/recall@20``) side by side."""
    from recsys.io.shop_import import ImportOptions, action_map, column_map, import_shop
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world
    from recsys.world.shop_export import write_shop_export
    from training.config import load_config
    from training.run import train

    tmp = Path(workdir or tempfile.mkdtemp(prefix="kolfeed-bench-shop-"))
    generate_world(scale_config(scale), seed, tmp / "world", scale=scale, progress=True)
    exported = write_shop_export(tmp / "world", tmp / "export")
    t0 = time.process_time()
    report = import_shop(
        ImportOptions(
            events=tmp / "export" / "events.csv.gz",
            out=tmp / "dataset",
            items=tmp / "export" / "items.csv",
            columns=column_map(IMPORT_MAP),
            actions=action_map(IMPORT_ACTIONS),
            overwrite=True,
        )
    )
    import_cpu = time.process_time() - t0
    config = Path(__file__).resolve().parents[2] / "configs" / "train" / "world_als.yaml"
    variants: dict[str, Any] = {}
    for name, extra in (("all behaviours", []), ("purchases only", ["graphs.behaviours=[buy]"])):
        cfg = load_config(config, [f"data.path={tmp / 'dataset'}", *extra])
        metrics = train(cfg, tmp / "runs", quiet=True).metrics
        variants[name] = {
            "overrides": extra,
            "buy_recall@20": round(metrics["buy/recall@20"], 4),
            "buy_ndcg@20": round(metrics["buy/ndcg@20"], 4),
            "recall@20": round(metrics["recall@20"], 4),
            "fit_seconds": round(metrics["fit_seconds"], 2),
        }
    held = json.loads(next((tmp / "runs").glob("*/metrics.json")).read_text())
    result = {
        "benchmark": "shop_behaviours",
        "scale": scale,
        "seed": seed,
        "export": exported,
        "import_cpu_s": round(import_cpu, 2),
        "import": {k: report.to_dict()[k] for k in ("rows_read", "rows_kept", "skipped", "actions", "split")},
        "held_out_purchase_pairs": held.get("data_test_buy_nnz"),
        "eval_users": held.get("eval_users"),
        "variants": variants,
        "ratio_all_over_buy": round(
            variants["all behaviours"]["buy_recall@20"]
            / max(variants["purchases only"]["buy_recall@20"], 1e-9),
            2,
        ),
        "load_average": os.getloadavg(),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"shop_behaviours_{scale}.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot_behaviours(result, results_dir / f"shop_behaviours_{scale}.png")
    return result


def _plot_behaviours(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(result["variants"])
    values = [result["variants"][n]["buy_recall@20"] for n in names]
    ax.bar(names, values, color=["tab:green", "tab:gray"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.4f}", ha="center", va="bottom")
    ax.set_ylabel("Recall@20 on held-out purchases")
    ax.set_title(f"shop stand-in ({result['scale']} world): world_als, all behaviours vs purchases")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

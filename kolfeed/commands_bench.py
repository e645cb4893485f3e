"""`kolfeed bench ...`: benchmarks, one explicit sub-command per area (modules in kolfeed.bench)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

bench_app = typer.Typer(
    help="Benchmarks: speed, memory and quality, written as JSON + plot to bench/results/."
)


@bench_app.command("world")
def bench_world(
    scale: list[str] = typer.Option(["tiny", "small"], help="scales to time, side by side (repeatable)"),
    seed: int = typer.Option(7),
    results: str = typer.Option("bench/results", help="directory for world.json and world.png"),
) -> None:
    """Time the world generator (events/s, peak RSS); `small` must finish under 60 s."""
    from kolfeed.bench.world import run
    from recsys.world.config import WorldError

    try:
        out = run(scale, seed, Path(results))
    except (WorldError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from None
    for r in out["rows"]:
        typer.echo(
            f"{r['scale']}: {r['events']:,} events in {r['wall_s']:.2f} s "
            f"({r['events_per_s']:,.0f} events/s), peak RSS {r['peak_rss_mb']:.0f} MB"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("models")
def models_command(
    data: str = typer.Option("", help="LightGCN-format directory with train.txt/test.txt"),
    out: str = typer.Option("bench/results", help="where to write models_<name>.json/.png"),
    models: str = typer.Option("popularity,als,graphfilter", help="comma-separated registry names"),
    set_: list[str] = typer.Option([], "--set", help="override a param: model.key=value (repeatable)"),
    tag: str = typer.Option("", help="result file suffix (default: the data directory's name)"),
    synthetic: str = typer.Option(
        "", help="instead of --data: time the graph filter on a synthetic USERSxITEMSxNNZ matrix"
    ),
) -> None:
    """Compare models side by side: Recall/NDCG@20, fit/eval time, peak RSS."""
    from kolfeed.bench.models import BenchDataError, bench_models, bench_synthetic, parse_overrides
    from recsys.models.registry import ModelConfigError

    try:
        overrides = parse_overrides(set_)
        if synthetic:
            parts = synthetic.lower().split("x")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                raise BenchDataError(
                    f"--synthetic {synthetic!r}: expected USERSxITEMSxNNZ, e.g. 100000x100000x3000000"
                )
            u, i, n = (int(p) for p in parts)
            report = bench_synthetic((u, i, n), Path(out), overrides.get("graphfilter", {}))
            typer.echo(json.dumps(report, indent=2))
            return
        if not data:
            raise BenchDataError("give --data DIR (LightGCN format) or --synthetic USERSxITEMSxNNZ")
        names = [m.strip() for m in models.split(",") if m.strip()]
        result = bench_models(Path(data), Path(out), names, overrides, tag or None)
    except (BenchDataError, ModelConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for r in result["results"]:
        m = r["metrics"]
        line = (
            f"{r['model']:<12} recall@20={m['recall@20']:.4f} ndcg@20={m['ndcg@20']:.4f} "
            f"fit={r['fit_seconds']:.1f}s eval={r['eval_seconds']:.1f}s peak_rss={r['peak_rss_mb']:.0f}MB"
        )
        if "embedding_only" in r["extra"]:
            e = r["extra"]["embedding_only"]
            line += f" | embeddings: recall@20={e['recall@20']:.4f} ndcg@20={e['ndcg@20']:.4f}"
        typer.echo(line)


@bench_app.command("train")
def train_command(
    gowalla_config: str = typer.Option("configs/train/gowalla.yaml", help="config of the Gowalla run"),
    gowalla_data: str = typer.Option("/work/shared/data/gowalla", help="LightGCN-format Gowalla split"),
    world_config: list[str] = typer.Option(
        ["configs/train/world_graphfilter.yaml", "configs/train/world_als.yaml"],
        help="world configs compared with all behaviours vs clicks only (repeatable)",
    ),
    scale: str = typer.Option("small", help="scale of the generated world"),
    seed: int = typer.Option(1),
    results: str = typer.Option("bench/results", help="directory for train.json and train.png"),
    skip_gowalla: bool = typer.Option(False, help="only the world comparison"),
) -> None:
    """Whole training runs on Gowalla (time, peak RSS, vs popularity/ALS) and graph variants on a world."""
    from kolfeed.bench.train import BenchError, run
    from training.config import ConfigError

    try:
        out = run(
            Path(gowalla_config),
            Path(gowalla_data),
            [Path(c) for c in world_config],
            scale,
            seed,
            Path(results),
            skip_gowalla,
        )
    except (BenchError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for r in out.get("gowalla", {}).get("rows", []):
        typer.echo(
            f"gowalla {r['model']:<28} recall@20={r['recall@20']:.4f} ndcg@20={r['ndcg@20']:.4f} "
            f"fit={r['fit_seconds']:.1f}s run={r['run_wall_seconds']:.1f}s peak_rss={r['peak_rss_mb']:.0f}MB"
        )
    for r in out["world"]["rows"]:
        typer.echo(
            f"world/{out['world']['scale']} {r['model']:<12} {r['graph']:<16} "
            f"buy_recall@20={r['buy_recall@20']:.4f} recall@20={r['recall@20']:.4f}"
        )

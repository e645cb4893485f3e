"""`kolfeed train`, `kolfeed eval`, `kolfeed runs`: config-run training and run comparison.

Errors the user can fix (bad config, bad data, corrupt run dir) print one line and exit 1
(kolfeed/failure.py); the last
line of `train`'s stdout is the run directory so scripts can capture it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kolfeed.failure import fail


def _user_errors() -> tuple[type[BaseException], ...]:
    from recsys.artifacts import ArtifactError
    from recsys.graphs import GraphError
    from recsys.io.errors import DataError
    from recsys.models.params import ModelConfigError
    from recsys.models.storage import ModelFileError
    from training.config import ConfigError
    from training.run import TrainError

    errors: list[type[BaseException]] = [
        ConfigError,
        DataError,
        ArtifactError,
        GraphError,
        TrainError,
        ModelConfigError,
        ModelFileError,
    ]
    try:
        from recsys.index import IndexBuildError

        errors.append(IndexBuildError)
    except ImportError:  # pragma: no cover - index module is another area's
        pass
    return tuple(errors)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path = typer.Argument(..., help="YAML run config, e.g. configs/train/world_graphfilter.yaml"),
        set_: list[str] = typer.Option([], "--set", help="override a key: --set model.params.factors=64"),
        out: Path = typer.Option(Path("runs"), help="root directory of run directories"),
        quiet: bool = typer.Option(False, help="no progress or log on stderr"),
    ) -> None:
        """Train from a config: load → graphs → fit → evaluate → export a versioned run directory."""
        from training.config import load_config
        from training.run import train as run_train

        try:
            cfg = load_config(config, set_)
            result = run_train(cfg, out, quiet=quiet)
        except _user_errors() as exc:
            fail(exc)
        if result.data_rows is not None:
            for line in result.data_rows.lines():
                typer.echo(line)
        for key in sorted(result.metrics):
            if "recall@" in key or "ndcg@" in key:
                typer.echo(f"{key:>24s}  {result.metrics[key]:.4f}")
        typer.echo(f"{'fit_seconds':>24s}  {result.metrics.get('fit_seconds', 0.0):.2f}")
        typer.echo(f"version {result.version}  run {result.run_id}")
        typer.echo(str(result.run_dir))

    @app.command("eval")
    def eval_(
        run_dir: Path = typer.Argument(..., help="a run directory written by `kolfeed train`"),
        as_json: bool = typer.Option(False, "--json", help="print metrics as JSON"),
        pipeline: bool = typer.Option(
            False, "--pipeline", help="score the served feed (FAISS + ranker + filters) beside the model"
        ),
        variant: str = typer.Option("default", help="ranking variant for --pipeline"),
        ranking_dir: Path = typer.Option(Path("configs/ranking"), help="ranking variants for --pipeline"),
    ) -> None:
        """Re-evaluate a run: verify checksums, reload the model, rebuild the data, print metrics."""
        from training.run import reevaluate, reevaluate_pipeline, was_refit

        if pipeline:
            expected: tuple[type[BaseException], ...] = (*_user_errors(), ValueError)
            try:
                served, full = reevaluate_pipeline(run_dir, variant, ranking_dir)
            except expected as exc:
                fail(exc)
            if as_json:
                typer.echo(json.dumps({"pipeline": served, "model": full}, indent=2, sort_keys=True))
                return
            typer.echo(f"{'metric':>24s}  {'model':>8s}  {'served':>8s}  {'ratio':>6s}")
            for key in sorted(full):
                got = served.get(key)
                if not isinstance(got, int | float) or "@" not in key:
                    continue
                ratio = got / full[key] if full[key] else float("nan")
                typer.echo(f"{key:>24s}  {full[key]:8.4f}  {got:8.4f}  {ratio:6.3f}")
            return
        try:
            metrics, recorded, same_data = reevaluate(run_dir)
        except _user_errors() as exc:
            fail(exc)
        if not same_data:
            typer.echo("warning: the data changed since training (fingerprint differs)", err=True)
        if was_refit(run_dir):
            typer.echo(
                "note: this run's model was refit on all events (export.refit_on_all_events); "
                "'now' is in-sample, 'recorded' is the held-out evaluation",
                err=True,
            )
        if as_json:
            typer.echo(json.dumps(metrics, indent=2, sort_keys=True))
            return
        typer.echo(f"{'metric':>24s}  {'now':>8s}  {'recorded':>8s}")
        for key in sorted(metrics):
            old = recorded.get(key)
            old_s = f"{old:.4f}" if isinstance(old, int | float) else "-"
            typer.echo(f"{key:>24s}  {metrics[key]:8.4f}  {old_s:>8s}")

    @app.command()
    def runs(
        out: Path = typer.Option(Path("runs"), help="root directory of run directories"),
    ) -> None:
        """List runs side by side: version, run id, model, dataset, recall/ndcg@20, buy recall, fit time."""
        from training.run import format_runs, list_runs

        rows = list_runs(out)
        if not rows:
            typer.echo(f"no runs under {out}")
            return
        typer.echo(format_runs(rows))

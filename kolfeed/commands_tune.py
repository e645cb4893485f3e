"""`kolfeed tune` (fit hyper-parameters on a validation split, write best.yaml) and `kolfeed models`
(every model with its parameters, defaults and search space)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def tune(
        config: Path = typer.Argument(
            ..., help="YAML train config with an optional tune section, e.g. configs/train/auto.yaml"
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="override a key: --set data.path=DIR --set tune.models=[als]"
        ),
        trials: int | None = typer.Option(
            None, min=1, help="finished trials to reach in the study (default: tune.trials)"
        ),
        timeout: float | None = typer.Option(
            None,
            min=1.0,
            help="seconds for the tune AND the final train of best.yaml (default: tune.budget_seconds)",
        ),
        out: Path = typer.Option(
            ..., help="tune directory: study.db (resumable), best.yaml, trials.csv/.png"
        ),
        quiet: bool = typer.Option(False, help="no progress on stderr"),
    ) -> None:
        """Search the models' declared spaces (see `kolfeed models`) with seeded TPE and pruning, on a
        validation split carved from the training data only; write OUT/best.yaml for `kolfeed train`.
        Re-running with the same --out resumes the study."""
        from kolfeed.commands_train import _user_errors
        from kolfeed.failure import fail
        from training.tune import TuneError, tune_from_file

        def say(msg: str) -> None:
            if not quiet:
                typer.echo(msg, err=True)

        errors: tuple[type[BaseException], ...] = (*_user_errors(), TuneError)
        try:
            result = tune_from_file(config, set_, out, trials, timeout, progress=not quiet, log=say)
        except errors as exc:
            fail(exc)
        s = result.summary
        typer.echo(
            f"trials: {s['trials']['complete']} complete, {s['trials']['pruned']} pruned "
            f"(stopped by {s['stopped_by']}) in {s['tune_seconds']:.0f} s"
        )
        typer.echo(f"best: trial {s['best']['trial']} {result.best_model} objective {result.best_value:.4f}")
        for key, value in sorted(result.best_params.items()):
            typer.echo(f"{key:>24s}  {value}")
        typer.echo(f"final train estimated at {s['final_train_estimate_seconds']:.0f} s")
        typer.echo(str(result.best_yaml))

    @app.command()
    def models() -> None:
        """List models: parameters with defaults, and the search space `kolfeed tune` uses."""
        from recsys.models import registry
        from recsys.models.adaptive import FACTOR_SCALE
        from recsys.models.space import describe_space

        for name in registry.MODELS:
            cls = registry.params_class(name)
            typer.echo(f"{name}")
            for field, info in getattr(cls, "model_fields", {}).items():
                default = info.default
                shown = "data-adaptive" if default is None and field == "factors" else repr(default)
                typer.echo(f"    {field:<18s} {shown}")
            space = describe_space(registry.search_space(name))
            typer.echo("  search space:" + ("" if space else " (none)"))
            for line in space:
                typer.echo(f"    {line}")
            if name in FACTOR_SCALE:
                scale, cap = FACTOR_SCALE[name]
                typer.echo(f"  factors unset: round8({scale} * sqrt(min(users, items))), capped at {cap}")

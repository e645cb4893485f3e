"""`kolfeed simulate`: an offline A/B test of ranking variants on a synthetic world's ground truth.

Feeds come from the production ranker and feature store (memory://), reactions from the world's hidden
ground truth; the readout is the experiment readout of the live service. Bad input prints one line and
exits 1 (kolfeed/failure.py); the last stdout line is the output directory.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kolfeed.failure import fail


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        experiment: Path = typer.Argument(
            ..., help="experiment YAML, e.g. configs/experiments/kol_weight.yaml"
        ),
        world: Path = typer.Option(..., "--world", help="world directory written by `kolfeed world`"),
        users: int = typer.Option(2000, help="simulated users sampled from the world"),
        days: int = typer.Option(3, help="simulated days"),
        run: Path | None = typer.Option(
            None, "--run", help="run directory to rank with (default: train the default config on the world)"
        ),
        seed: int = typer.Option(0, help="seeds the sample, sessions and every reaction"),
        out: Path = typer.Option(
            Path("sim_out"), help="writes events.parquet, readout.json, simulation.json"
        ),
        sessions_per_day: float = typer.Option(2.0, help="mean feed sessions per simulated user per day"),
        feed_size: int = typer.Option(20, help="entries per requested feed"),
        sample: str = typer.Option("cluster", help="cluster (along friendships) or random"),
        variants_dir: Path = typer.Option(Path("configs/ranking"), help="ranking variant YAMLs"),
        train_config: Path = typer.Option(
            Path("configs/train/world_graphfilter.yaml"), help="config trained when --run is not given"
        ),
        quiet: bool = typer.Option(False, help="no progress bar"),
    ) -> None:
        """Simulate an experiment: sampled users request feeds per arm, the ground truth decides clicks,
        shares, buys and hides, events flow through the store, and the per-arm readout is printed."""
        from kolfeed.simulation_runner import (
            format_readout,
            run_simulation,
            train_default_run,
            write_result,
        )
        from recsys.artifacts import ArtifactError
        from recsys.experiments.config import ExperimentConfigError, load_experiment
        from recsys.ranking.feed_model import FeedModel
        from recsys.ranking.variants import VariantError, load_variants
        from recsys.simulate.config import SimulationError, sim_config
        from recsys.world.config import WorldError

        errors: tuple[type[BaseException], ...] = (
            ArtifactError,
            ExperimentConfigError,
            VariantError,
            SimulationError,
            WorldError,
            FileNotFoundError,
        )
        try:
            from training.config import ConfigError
            from training.run import TrainError

            errors = (*errors, ConfigError, TrainError)
        except ImportError:  # pragma: no cover - training is another area's
            pass
        try:
            cfg = sim_config(
                users=users,
                days=days,
                seed=seed,
                sessions_per_day=sessions_per_day,
                feed_size=feed_size,
                sample=sample,
            )
            exp = load_experiment(experiment)
            variants = load_variants(variants_dir)
            if not (world / "truth").is_dir():
                raise SimulationError(f"{world}: no truth/ directory (generate it with `kolfeed world`)")
            if run is None:
                typer.echo(f"no --run given: training {train_config} on {world}", err=True)
                run = train_default_run(world, out, train_config)
            model = FeedModel.load(run)
            result = run_simulation(world, exp, variants, model, cfg, progress=not quiet)
            write_result(result, out)
        except errors as exc:
            fail(exc)
        typer.echo(format_readout(result.report))
        meta, st = result.meta, result.meta["stats"]
        typer.echo(
            f"{meta['users_sampled']} users, {st['sessions']} sessions, {meta['events']} events, "
            f"{st['shares_delivered']} shares seen by simulated friends; {meta['wall_seconds']:.1f} s"
        )
        typer.echo(str(out))

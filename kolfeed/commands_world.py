"""`kolfeed world`: generate a synthetic social-commerce world (implemented by recsys.world)."""

from __future__ import annotations

import typer

from kolfeed.failure import fail


def _parse_sets(sets: list[str]) -> dict[str, int | float]:
    from recsys.world.config import WorldError

    out: dict[str, int | float] = {}
    for s in sets:
        key, sep, raw = s.partition("=")
        if not sep or not key:
            raise WorldError(f"--set expects key=value, got {s!r}")
        try:
            out[key.strip()] = int(raw) if raw.strip().lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise WorldError(f"--set {key}: {raw!r} is not a number") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def world(
        scale: str = typer.Option("tiny", help="tiny | small | medium | large"),
        seed: int = typer.Option(1, help="random seed; same seed gives byte-identical tables"),
        out: str = typer.Option(..., help="output directory"),
        set_: list[str] = typer.Option(
            [], "--set", help="override a scale setting, e.g. --set n_users=5000 (repeatable)"
        ),
        progress: bool = typer.Option(True, help="show a progress bar on stderr"),
    ) -> None:
        """Generate a seeded synthetic world with hidden ground truth and a chronological split."""
        from recsys.world.config import WorldError, scale_config
        from recsys.world.generate import generate_world

        try:
            cfg = scale_config(scale, _parse_sets(set_))
            report = generate_world(cfg, seed, out, scale=scale, progress=progress)
        except (WorldError, OSError) as e:
            fail(e)
        counts = ", ".join(f"{k}={v}" for k, v in report.counts.items())
        split = report.split
        typer.echo(f"world written to {out}: {counts}; split train={split['n_train']} test={split['n_test']}")

"""`kolfeed world`: generate a synthetic social-commerce world (implemented by recsys.world)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def world(
        scale: str = typer.Option("tiny", help="tiny | small | medium | large"),
        seed: int = typer.Option(1, help="random seed; same seed gives byte-identical tables"),
        out: str = typer.Option(..., help="output directory"),
    ) -> None:
        """Generate a seeded synthetic world with hidden ground truth and a chronological split."""
        raise typer.Exit(code=2)

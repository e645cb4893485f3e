"""`kolfeed bench ...`: benchmarks, one explicit sub-command per area (modules in kolfeed.bench)."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Benchmarks: speed, memory and quality, written as JSON + plot to bench/results/.")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")

"""The ``kolfeed`` command. Each area registers its commands here explicitly; heavy imports stay
inside command bodies so ``kolfeed --help`` is instant."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="kolfeed",
    help="kolfeed: a recommendation engine for a creator-driven social-commerce feed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """kolfeed: generate worlds, train, serve, experiment, report, benchmark."""


def _register() -> None:
    # Explicit registry: one line per area. Each module exposes `register(app)`.
    from kolfeed import commands_bench, commands_world

    commands_world.register(app)
    commands_bench.register(app)
    from kolfeed import commands_train

    commands_train.register(app)
    from kolfeed import commands_serve

    commands_serve.register(app)
    from kolfeed import commands_data

    commands_data.register(app)
    from kolfeed import commands_store

    commands_store.register(app)
    from kolfeed import commands_index

    commands_index.register(app)
    from kolfeed import commands_report

    commands_report.register(app)
    from kolfeed import commands_simulate

    commands_simulate.register(app)


def main() -> None:
    _register()
    app()


if __name__ == "__main__":
    main()

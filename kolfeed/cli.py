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


def _show_version(value: bool) -> None:
    if value:
        from kolfeed import __version__

        typer.echo(f"kolfeed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """kolfeed: generate worlds, train, serve, experiment, report, benchmark."""


_registered = False


def _register() -> None:
    """Attach every area's commands, once. Explicit registry: one entry per area, each module
    exposing ``register(app)``; modules keep heavy imports inside command bodies."""
    global _registered
    if _registered:
        return
    from kolfeed import (
        commands_bench,
        commands_data,
        commands_events,
        commands_index,
        commands_report,
        commands_serve,
        commands_simulate,
        commands_store,
        commands_train,
        commands_tune,
        commands_world,
    )

    for module in (
        commands_world,
        commands_data,
        commands_train,
        commands_tune,
        commands_index,
        commands_serve,
        commands_store,
        commands_events,
        commands_simulate,
        commands_report,
        commands_bench,
    ):
        module.register(app)
    _registered = True


def main() -> None:
    _register()
    app()


if __name__ == "__main__":
    main()

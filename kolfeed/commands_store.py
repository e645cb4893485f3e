"""`kolfeed store ...`: operate the online feature store chosen by URL (memory://, redis://)."""

from __future__ import annotations

import typer

from kolfeed.failure import fail

store_app = typer.Typer(help="Online feature store: check connectivity, rebuild it from the event log.")


@store_app.command("ping")
def ping(
    store: str = typer.Option(
        "memory://", "--store", help="store URL, e.g. redis://:PASSWORD@127.0.0.1:6379/0"
    ),
) -> None:
    """Check that the store answers; exit 1 if it does not, 2 if the URL is wrong."""
    import asyncio

    from features.errors import StoreConfigError, StoreError
    from features.factory import open_store, redact_url

    try:
        backend = open_store(store)
    except StoreConfigError as exc:
        fail(exc)

    async def run() -> str | None:
        """None when the store answers, else the reason it did not."""
        try:
            if await backend.ping():
                return None
            await backend.trending(1)  # ping never raises; a read tells why it failed
            return "did not answer"
        except StoreError as exc:
            return str(exc)
        finally:
            await backend.close()

    problem = asyncio.run(run())
    if problem is None:
        typer.echo(f"ok {redact_url(store)}")
        return
    fail(f"store {redact_url(store)}: {problem}")


@store_app.command("rebuild")
def rebuild(
    log_dir: str = typer.Option(
        ...,
        "--log",
        help="event log directory (the service's durable log; with `serve --workers N`, the parent of "
        "its worker-<i> logs)",
    ),
    store: str = typer.Option(..., "--store", help="store URL to rebuild, e.g. redis://127.0.0.1:6379/0"),
    clear: bool = typer.Option(
        False, "--clear", help="drop the store's keys (its prefix only) first; use unless the store is empty"
    ),
) -> None:
    """Replay the whole event log into the store (run it with the service stopped).

    It takes the writer lock of the log (of every worker log), so it refuses while a service process
    owns one. Exit 1 if the store or the log fails, 2 if the URL is wrong.
    """
    import asyncio

    from features.errors import StoreConfigError, StoreError
    from features.eventlog import EventLogError
    from features.factory import open_store, redact_url
    from features.replay import RebuildResult, rebuild_store

    try:
        backend = open_store(store)
    except StoreConfigError as exc:
        fail(exc)

    async def run() -> RebuildResult:
        try:
            return await rebuild_store(log_dir, backend, clear=clear, progress=True)
        finally:
            await backend.close()

    try:
        result = asyncio.run(run())
    except (StoreError, EventLogError) as exc:
        fail(f"rebuild of {redact_url(store)} from {log_dir}: {exc}")
    per_log = ""
    if len(result.positions) > 1:
        per_log = " (" + ", ".join(f"{name}={pos}" for name, pos in result.positions.items()) + ")"
    typer.echo(
        f"rebuilt {redact_url(store)} from {log_dir}: {result.replayed} events replayed, "
        f"{result.skipped_invalid} rejected as invalid, cleared={result.cleared}, "
        f"position={result.position}{per_log}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")

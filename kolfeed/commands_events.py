"""`kolfeed events ...`: the service's durable event logs as data (export to Parquet for training)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from kolfeed.failure import fail

events_app = typer.Typer(help="The service's event logs: export them to date-partitioned Parquet.")


@events_app.command("export")
def export(
    log_dir: Path = typer.Option(
        Path("var/eventlog"),
        "--log",
        help="an event log, the parent of a service's worker-<i> logs, or a directory of replicas' log "
        "directories (shared storage)",
    ),
    out: Path = typer.Option(..., "--out", help="export directory: DIR/date=YYYY-MM-DD/part-….parquet"),
    replica: str | None = typer.Option(
        None,
        "--replica",
        help="replica id for logs that recorded none (older logs); default: $KOLFEED_REPLICA or the hostname",
    ),
    chunk_rows: int = typer.Option(200_000, "--chunk-rows", min=1, help="events per committed chunk"),
) -> None:
    """Append every event not yet exported to OUT (idempotent, resumable; run it as often as you like).

    Each event is written once, keyed by (replica, worker, seq); progress is committed in
    OUT/_export_state.json after each chunk, so an interrupted export resumes where it stopped.
    Exit 1 if a log or the export directory is inconsistent."""
    from tqdm import tqdm

    from features.event_export import export_events
    from features.eventlog import EventLogError, host_replica

    fallback = replica or os.environ.get("KOLFEED_REPLICA") or host_replica()
    try:
        with tqdm(desc="exporting events", unit="ev", disable=not sys.stderr.isatty()) as bar:
            result = export_events(
                log_dir, out, fallback_replica=fallback, chunk_rows=chunk_rows, on_events=bar.update
            )
    except EventLogError as exc:
        fail(f"export of {log_dir} into {out}: {exc}")
    per_log = ", ".join(f"{key}: +{n} (to seq {result.positions[key]})" for key, n in result.per_log.items())
    dates = sorted(result.dates)
    span = f"{dates[0]} … {dates[-1]}" if len(dates) > 1 else (dates[0] if dates else "none")
    typer.echo(
        f"exported {result.events} events from {result.logs} logs into {out} "
        f"({result.files} files; dates {span}; "
        f"{result.stale_files_removed} left by an interrupted run removed)"
    )
    if per_log:
        typer.echo(f"  {per_log}")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")

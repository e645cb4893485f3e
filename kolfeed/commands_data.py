"""`kolfeed data check PATH`: validate a table file, a world directory or a benchmark dataset and print
what the loaders would keep, so bad input is found before a long training run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from kolfeed.failure import EXIT_FAILED, fail

data_app = typer.Typer(help="Check input data: table files, world directories, benchmark datasets.")


def _table_name(path: Path, given: str | None) -> str:
    from recsys.io.tables import SUFFIXES
    from recsys.schema import TABLES

    if given is None:
        stem = path.name
        for suffix in SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        given = "events" if stem in ("train", "test") and path.parent.name == "split" else stem
    if given not in TABLES:
        raise typer.BadParameter(
            f"unknown table {given!r}; pass --table with one of: {', '.join(TABLES)}", param_hint="--table"
        )
    return given


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="a table file (.parquet/.csv/.csv.gz), a world dir or a dataset"),
    table: str | None = typer.Option(None, "--table", help="schema of a single file (default: file name)"),
    fmt: str | None = typer.Option(
        None, "--format", help="check a benchmark dataset instead: lightgcn | recbole | movielens"
    ),
    as_json: bool = typer.Option(False, "--json", help="print reports as JSON"),
) -> None:
    """Validate PATH and print the load report(s); exits non-zero with a one-line message on bad input."""
    from recsys.io import DataError, load_table, load_world
    from recsys.schema import TABLES

    start = time.perf_counter()
    try:
        if fmt is not None:
            from recsys.datasets import load_dataset

            data = load_dataset(path, fmt)
            seconds = time.perf_counter() - start
            facts = {
                "path": str(path),
                "format": fmt,
                "users": data.n_users,
                "items": data.n_items,
                "train_interactions": int(data.train.nnz),
                "test_interactions": int(data.test.nnz),
                "seconds": round(seconds, 3),
            }
            if as_json:
                typer.echo(json.dumps(facts, indent=2))
            else:
                typer.echo(
                    f"{path} ({fmt}): {data.n_users:,} users, {data.n_items:,} items, "
                    f"{data.train.nnz:,} train and {data.test.nnz:,} test interactions, "
                    f"loaded in {seconds:.2f} s"
                )
            return
        if path.is_dir():
            from recsys.io.references import check_references

            world = load_world(path, progress=True)
            reports = list(world.reports.values())
            problems = check_references(world)
            seconds = time.perf_counter() - start
            if as_json:
                payload = {
                    "path": str(path),
                    "seconds": round(seconds, 3),
                    "absent_tables": list(world.absent),
                    "has_split": world.has_split,
                    "reports": [r.to_dict() for r in reports],
                    "dangling_references": [str(p) for p in problems],
                }
                typer.echo(json.dumps(payload, indent=2))
            else:
                for report in reports:
                    typer.echo(report.summary())
                if world.absent:
                    typer.echo(f"absent optional tables (loaded empty): {', '.join(world.absent)}")
                for problem in problems:
                    typer.echo(f"error: {problem}", err=True)
                refs = f"{len(problems)} dangling reference(s)" if problems else "every reference resolves"
                typer.echo(
                    f"split: {'yes' if world.has_split else 'none'}; {refs}; checked in {seconds:.2f} s"
                )
            if problems:
                raise typer.Exit(code=EXIT_FAILED)
            return
        name = _table_name(path, table)
        result = load_table(path, TABLES[name])
        seconds = time.perf_counter() - start
        if as_json:
            typer.echo(json.dumps({**result.report.to_dict(), "seconds": round(seconds, 3)}, indent=2))
        else:
            typer.echo(result.report.summary())
            typer.echo(f"checked in {seconds:.2f} s")
    except DataError as exc:
        fail(exc)


@data_app.command("import")
def import_(
    events: Path = typer.Argument(..., help="the shop's events file (.csv, .csv.gz or .parquet)"),
    out: Path = typer.Option(..., "--out", help="dataset directory to write (data.format: world)"),
    columns: str | None = typer.Option(
        None, "--map", help="our field=the shop's column, e.g. user_id=customer_id,item_id=sku,ts=timestamp"
    ),
    actions: str | None = typer.Option(
        None, "--actions", help="the shop's event name=our action or skip, e.g. purchase=buy,page_view=skip"
    ),
    items: Path | None = typer.Option(
        None, "--items", help="catalogue: item_id, category, brand, price, ..."
    ),
    creators: Path | None = typer.Option(None, "--creators", help="creators (KOLs): kol_id, verticals"),
    posts: Path | None = typer.Option(None, "--posts", help="posts: post_id, kol_id, item_id, created_at"),
    follows: Path | None = typer.Option(None, "--follows", help="follows: user_id, kol_id, ts"),
    friends: Path | None = typer.Option(None, "--friends", help="friendships: user_id, friend_id"),
    split_at: str | None = typer.Option(
        None, "--split-at", help="events at or after this time are test (unix s/ms or ISO-8601)"
    ),
    test_fraction: float | None = typer.Option(
        None, "--test-fraction", help="the latest fraction of events held out as test (default 0.2)"
    ),
    header: str | None = typer.Option(
        None,
        "--columns",
        help="column names of a CSV without a header line, e.g. user,item,category,event,ts",
    ),
    delimiter: str = typer.Option(",", "--delimiter", help="CSV field separator: one character, or 'tab'"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out directory"),
    as_json: bool = typer.Option(False, "--json", help="print the import report as JSON"),
) -> None:
    """Build a dataset from a shop's export (events alone are enough) with a chronological split."""
    from recsys.io.errors import DataError
    from recsys.io.shop_import import ImportOptions, action_map, column_map, import_shop

    if split_at is not None and test_fraction is not None:
        raise typer.BadParameter("give --split-at or --test-fraction, not both", param_hint="--split-at")
    sep = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
    if len(sep) != 1:
        raise typer.BadParameter(f"{delimiter!r} is not one character (or 'tab')", param_hint="--delimiter")
    names = [n.strip() for n in header.split(",")] if header is not None else None
    if names is not None and (not all(names) or len(set(names)) != len(names)):
        raise typer.BadParameter("column names must be non-empty and distinct", param_hint="--columns")
    try:
        opts = ImportOptions(
            events=events,
            out=out,
            columns=column_map(columns),
            actions=action_map(actions),
            items=items,
            creators=creators,
            posts=posts,
            follows=follows,
            friends=friends,
            split_at=split_at,
            test_fraction=0.2 if test_fraction is None else test_fraction,
            overwrite=overwrite,
            progress=True,
            header=names,
            delimiter=sep,
        )
        report = import_shop(opts)
    except DataError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"dataset written to {out} (train with: --set data.path={out})")


@data_app.command("shop-export")
def shop_export(
    world: Path = typer.Argument(..., help="a world directory (`kolfeed world --out DIR`)"),
    out: Path = typer.Option(..., "--out", help="directory for events.csv.gz and items.csv"),
    integer_ids: bool = typer.Option(False, "--integer-ids", help="customer ids and SKUs as plain integers"),
    seed: int = typer.Option(0, help="seed of the duplicates, noise rows and shuffling"),
) -> None:
    """Rewrite a world's events as a shop would export them (string ids, shop event names, ms
    timestamps, duplicates, out-of-order and broken rows): a stand-in to try `data import` on."""
    from recsys.world.shop_export import IMPORT_ACTIONS, IMPORT_MAP, ShopExportConfig, write_shop_export

    if not (world / "events.parquet").is_file():
        fail(f"{world}: no events.parquet (not a world directory)")
    counts = write_shop_export(world, out, ShopExportConfig(seed=seed, string_ids=not integer_ids))
    typer.echo(
        f"wrote {out / 'events.csv.gz'} ({counts['events']:,} rows, {counts['duplicates']:,} duplicates, "
        f"{counts['noise']:,} page_view rows) and {out / 'items.csv'} ({counts['items']:,} items)"
    )
    typer.echo(
        f"import it with: kolfeed data import {out / 'events.csv.gz'} --out DIR --items {out / 'items.csv'} "
        f"--map {IMPORT_MAP} --actions {IMPORT_ACTIONS}"
    )

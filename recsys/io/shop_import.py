"""`kolfeed data import`: a shop's own export (events alone are enough) → a world directory.

Why: a shop has a click/cart/purchase log with its own column names, event names, id strings and
timestamp unit, and maybe a catalogue. Everything downstream (``data.format: world`` training,
serving) reads one layout (see ``recsys/io/world.py``). This module maps the shop's names onto it,
fills what is missing with recorded defaults and writes a chronological split, counting every row it
reads, keeps and skips (per reason) so nothing is dropped silently.

Memory: the events file is read in blocks and each block is reduced to compact columns (int64
seconds, an int8 action code, the id strings), so the peak is about the size of the kept events in
Arrow plus one sort permutation, not the size of the raw text. The output appears whole or not at all
(written into a temporary directory next to ``--out`` and renamed).

Pieces: ``shop_options`` (what the import is told and what it reports), ``shop_events`` (reading and
normalising the events file), ``shop_catalogue`` (items, creators, posts, follows, friends); this
module puts them together: repeats removed, time order, the split, the files written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.io.shop_catalogue import SIDES, assemble, drop_unknown_posts, read_side
from recsys.io.shop_events import read_events
from recsys.io.shop_options import (
    DEFAULT_ITEM,
    DEFAULT_SEGMENT,
    DEFAULT_VERTICALS,
    DUPLICATE,
    EVENT_OPTIONAL,
    EVENT_REQUIRED,
    ID_FIELDS,
    PARQUET_OPTIONS,
    SKIP,
    ImportOptions,
    ImportReport,
    ShopImportError,
    action_map,
    column_map,
)
from recsys.io.timestamps import iso, parse_one
from recsys.schema import ACTION_NAMES, EVENTS

__all__ = [
    "DEFAULT_ITEM",
    "DEFAULT_SEGMENT",
    "ImportOptions",
    "ImportReport",
    "ShopImportError",
    "action_map",
    "column_map",
    "import_shop",
]

# ------------------------------------------------------------------------------------------ building


def _dedup_sort(events: pa.Table) -> tuple[pa.Table, int]:
    """Events sorted by time, exact repeats (user, item, action, ts) removed; returns the count removed.

    Speed: user, item and action are packed into one int64 of dense codes, and with the time offset
    into a single sort key when it fits (10x faster than a four-key lexsort on 10M rows); rows at the
    same second are ordered by those codes, so repeats are neighbours either way."""
    if events.num_rows == 0:
        return events, 0
    ts = events.column("ts").to_numpy()
    order, same = _repeat_order(
        ts,
        pc.dictionary_encode(events.column("user_id").combine_chunks()),
        pc.dictionary_encode(events.column("item_id").combine_chunks()),
        events.column("action").to_numpy(),
    )
    keep = order[~same]
    del order
    return events.take(pa.array(keep)), int(same.sum())


def _repeat_order(
    ts: np.ndarray, user: pa.DictionaryArray, item: pa.DictionaryArray, action: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The time order of the rows and, in that order, which rows repeat the one before (in-place
    arithmetic: a few int64 arrays of the row count at a time)."""
    n_items, n_actions = max(1, len(item.dictionary)), len(ACTION_NAMES)
    key_space = max(1, len(user.dictionary)) * n_items * n_actions
    key = user.indices.to_numpy().astype(np.int64)
    key *= n_items
    key += item.indices.to_numpy()
    key *= n_actions
    key += action
    span = int(ts.max() - ts.min()) + 1
    if key_space * span < 2**63:
        key += (ts - ts.min()) * key_space
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        return order, np.concatenate([[False], ordered[1:] == ordered[:-1]])
    if key_space < 2**63:
        order = np.lexsort((key, ts))
        same_ts = ts[order[1:]] == ts[order[:-1]]
        ordered = key[order]
        return order, np.concatenate([[False], same_ts & (ordered[1:] == ordered[:-1])])
    # too many distinct (user, item) pairs to pack: sort on the four keys
    u, i = user.indices.to_numpy(), item.indices.to_numpy()
    order = np.lexsort((action, i, u, ts))
    a, b = order[1:], order[:-1]
    repeat = (ts[a] == ts[b]) & (u[a] == u[b]) & (i[a] == i[b]) & (action[a] == action[b])
    return order, np.concatenate([[False], repeat])


def _cut(ts_sorted: np.ndarray, opts: ImportOptions) -> int:
    if opts.split_at is not None:
        try:
            return parse_one(opts.split_at, "--split-at")
        except ValueError as exc:
            raise ShopImportError(str(exc)) from None
    if not 0 < opts.test_fraction < 1:
        raise ShopImportError(f"--test-fraction must be between 0 and 1 (got {opts.test_fraction})")
    index = min(len(ts_sorted) - 1, int(len(ts_sorted) * (1.0 - opts.test_fraction)))
    return int(ts_sorted[index])


def _events_out(events: pa.Table) -> pa.Table:
    """The kept events in the world's events schema (ids as the shop's strings)."""
    n = events.num_rows
    codes = events.column("action").combine_chunks()
    action = pa.DictionaryArray.from_arrays(pc.cast(codes, pa.int32()), pa.array(list(ACTION_NAMES)))
    cols: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for col in EVENTS.columns:
        if col.name == "action":
            values: Any = action.cast(pa.string())
        elif col.name in events.column_names:
            values = events.column(col.name)
        else:
            values = pa.nulls(
                n, pa.string() if col.name in ID_FIELDS or col.name == "request_id" else col.type
            )
        cols.append(values)
        fields.append(pa.field(col.name, values.type, nullable=col.nullable or col.name in EVENT_OPTIONAL))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def import_shop(opts: ImportOptions) -> ImportReport:
    """Import ``opts.events`` (plus any catalogue/social files) into the world directory ``opts.out``."""
    out = Path(opts.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not opts.overwrite:
        raise ShopImportError(f"{out}: exists and is not empty (choose another --out, or pass --overwrite)")
    events, rows_read, norm, _ = read_events(opts)
    unmapped = norm.coder.unmapped()
    if unmapped:
        listed = ", ".join(f"{name!r} ({count:,} rows)" for name, count in unmapped.items())
        example = ",".join(f"{name}=..." for name in list(unmapped)[:3])
        raise ShopImportError(
            f"{opts.events}: {len(unmapped)} event name(s) not mapped to an action: {listed}; "
            f"map each with --actions (e.g. --actions {example}) "
            f"to one of {', '.join(ACTION_NAMES)} or {SKIP}"
        )
    events, duplicates = _dedup_sort(events)
    if duplicates:
        norm.skipped[DUPLICATE] += duplicates
    if events.num_rows < 2:
        reasons = "; ".join(f"{n:,} {reason}" for reason, n in norm.skipped.most_common()) or "none"
        raise ShopImportError(
            f"{opts.events}: {events.num_rows} usable event(s) of {rows_read:,} rows read, need at least 2 "
            f"to split (skipped: {reasons}; timestamps read as {norm.ts_format})"
        )

    report = ImportReport(
        events_file=str(opts.events),
        timestamp_format=norm.ts_format or "?",
        rows_read=rows_read,
        rows_kept=events.num_rows,
        skipped=dict(sorted(norm.skipped.items())),
        event_names=norm.coder.applied(),
    )
    ts = events.column("ts").to_numpy()
    first_ts = int(ts[0])
    cut = _cut(ts, opts)
    k = int(np.searchsorted(ts, cut, side="left"))
    if k == 0 or k == len(ts):
        part = "train" if k == 0 else "test"
        raise ShopImportError(
            f"the split at {iso(cut)} ({cut}) leaves the {part} part empty "
            f"(events run from {iso(first_ts)} to {iso(int(ts[-1]))})"
        )
    codes = events.column("action").to_numpy()
    counts = np.bincount(codes.astype(np.int64), minlength=len(ACTION_NAMES))
    report.actions = {a: int(c) for a, c in zip(ACTION_NAMES, counts, strict=True) if c}

    sides = {
        name: read_side(path, SIDES[name], opts, first_ts, report)
        for name, path in (
            ("items", opts.items),
            ("kols", opts.creators),
            ("posts", opts.posts),
            ("follows", opts.follows),
            ("friends", opts.friends),
        )
        if path is not None
    }
    events = drop_unknown_posts(events, sides.get("posts"), report)
    tables = assemble(events, sides, report, first_ts)
    report.users = tables["users"].num_rows
    report.items = tables["items"].num_rows
    report.split = {"cut_ts": cut, "cut": iso(cut), "n_train": k, "n_test": len(ts) - k}
    _write(out, tables, events, k, report, opts)
    return report


def _write(
    out: Path,
    tables: dict[str, pa.Table],
    events: pa.Table,
    k: int,
    report: ImportReport,
    opts: ImportOptions,
) -> None:
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "split").mkdir(parents=True)
    try:
        for name, table in tables.items():
            pq.write_table(table, tmp / f"{name}.parquet", **PARQUET_OPTIONS)
            report.tables[name] = table.num_rows
        written = _events_out(events)
        pq.write_table(written, tmp / "events.parquet", **PARQUET_OPTIONS)
        pq.write_table(written.slice(0, k), tmp / "split" / "train.parquet", **PARQUET_OPTIONS)
        pq.write_table(written.slice(k), tmp / "split" / "test.parquet", **PARQUET_OPTIONS)
        report.tables["events"] = written.num_rows
        split = {"cut_ts": report.split["cut_ts"], "n_train": k, "n_test": written.num_rows - k}
        (tmp / "split" / "split.json").write_text(json.dumps(split, indent=2) + "\n")
        meta = {
            "source": "kolfeed data import",
            "ids": "the shop's own ids, as text",
            "columns": {f: opts.source(f) for f in EVENT_REQUIRED},
            "defaults": {
                "item": DEFAULT_ITEM,
                "user_segment": DEFAULT_SEGMENT,
                "kol_verticals": DEFAULT_VERTICALS,
                "missing_times": "the first event time",
            },
            "import": report.to_dict(),
        }
        (tmp / "world.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

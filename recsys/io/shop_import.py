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
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from recsys.ids import MAX_ID_LENGTH
from recsys.io.errors import DataError
from recsys.io.tables import table_format
from recsys.io.timestamps import detect_format, iso, parse_one, to_unix_seconds
from recsys.progress import progress
from recsys.schema import ACTION_NAMES, EVENTS

SKIP = "skip"
"""``--actions name=skip``: rows with that event name are dropped and counted, not an error."""
EVENT_REQUIRED: tuple[str, ...] = ("ts", "user_id", "item_id", "action")
EVENT_OPTIONAL: tuple[str, ...] = ("post_id", "kol_id", "to_user_id", "request_id", "value")
ID_FIELDS: tuple[str, ...] = ("user_id", "item_id", "post_id", "kol_id", "to_user_id")
DEFAULT_ITEM: dict[str, Any] = {
    "category": "unknown",
    "brand": "unknown",
    "price": 0.0,
    "merchant_id": "0",
    "in_stock": True,
}
"""Catalogue values of items with no catalogue row (or an empty cell); written to ``world.json``."""
DEFAULT_SEGMENT = "unknown"
DEFAULT_VERTICALS = ""
DUPLICATE = "duplicate (same user, item, action and ts as an earlier row)"
WRONG_FIELDS = "wrong field count"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}
_BLOCK_BYTES = 16 << 20
_PARQUET_BATCH = 1 << 20


class ShopImportError(DataError):
    """The shop's data cannot be imported as given; the message says what to change."""


# ------------------------------------------------------------------------------------------- options


def parse_pairs(text: str | None, option: str) -> dict[str, str]:
    """``"a=b,c=d"`` → ``{"a": "b", "c": "d"}``; a malformed pair names the option."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ShopImportError(f"{option}: {part.strip()!r} is not name=value")
        if key in out:
            raise ShopImportError(f"{option}: {key!r} is given twice")
        out[key] = value
    return out


def column_map(text: str | None) -> dict[str, str]:
    """``--map user_id=customer_id,...``: our event field → the shop's column name."""
    pairs = parse_pairs(text, "--map")
    known = EVENT_REQUIRED + EVENT_OPTIONAL
    for key in pairs:
        if key not in known:
            raise ShopImportError(f"--map: unknown field {key!r}; expected one of {', '.join(known)}")
    return pairs


def action_map(text: str | None) -> dict[str, str]:
    """``--actions purchase=buy,page_view=skip``: the shop's event name → our action (or skip)."""
    pairs = parse_pairs(text, "--actions")
    for name, action in pairs.items():
        if action != SKIP and action not in ACTION_NAMES:
            raise ShopImportError(
                f"--actions: {name}={action}: unknown action {action!r}; "
                f"expected one of {', '.join(ACTION_NAMES)} or {SKIP}"
            )
    return pairs


@dataclass
class ImportOptions:
    events: Path
    out: Path
    columns: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    items: Path | None = None
    creators: Path | None = None
    posts: Path | None = None
    follows: Path | None = None
    friends: Path | None = None
    split_at: str | None = None
    test_fraction: float = 0.2
    overwrite: bool = False
    progress: bool = False
    block_bytes: int = _BLOCK_BYTES

    def source(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class ImportReport:
    """What the import read, kept and skipped (per reason), and what it wrote."""

    events_file: str
    timestamp_format: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    """Kept events per action (our names)."""
    event_names: dict[str, str] = field(default_factory=dict)
    """The shop's event name → our action or ``skip``, as applied."""
    users: int = 0
    items: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    """Rows written per table."""
    defaults: dict[str, int] = field(default_factory=dict)
    """How many rows got a recorded default, per what was filled (e.g. ``items: no catalogue row``)."""
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_file": self.events_file,
            "timestamp_format": self.timestamp_format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_skipped": self.rows_skipped,
            "skipped": dict(self.skipped),
            "actions": dict(self.actions),
            "event_names": dict(self.event_names),
            "users": self.users,
            "items": self.items,
            "tables": dict(self.tables),
            "defaults": dict(self.defaults),
            "split": dict(self.split),
        }

    def lines(self) -> list[str]:
        out = [
            f"read {self.rows_read:,} rows from {self.events_file} (timestamps: {self.timestamp_format})",
            f"kept {self.rows_kept:,}, skipped {self.rows_skipped:,}",
        ]
        for reason, count in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  skipped {count:,}: {reason}")
        kept = ", ".join(f"{a} {n:,}" for a, n in self.actions.items() if n)
        out.append(f"events per action: {kept or 'none'}")
        out.append(f"users {self.users:,}, items {self.items:,}")
        for what, count in self.defaults.items():
            out.append(f"  defaults used: {count:,} {what}")
        s = self.split
        if s:
            out.append(
                f"split at {iso(s['cut_ts'])} (ts {s['cut_ts']}): train {s['n_train']:,} events, "
                f"test {s['n_test']:,} events"
            )
        return out


# ---------------------------------------------------------------------------------------- reading


@dataclass
class _Batches:
    """The events file as a stream of record batches plus how far through the file we are."""

    names: list[str]
    batches: Iterator[pa.RecordBatch]
    invalid_rows: list[int]
    size: int
    position: Any


def _csv_names(path: Path) -> list[str]:
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 16),
            parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise ShopImportError(f"{path}: cannot read the CSV header ({exc})") from None
    names = list(reader.schema.names)
    reader.close()
    return names


def _open_events(path: Path, required: list[str], optional: list[str], block_bytes: int) -> _Batches:
    """Batches of the required columns and of the optional ones the file has."""
    if not path.is_file():
        raise ShopImportError(f"{path}: no such file")
    size = path.stat().st_size
    if table_format(path) == "parquet":
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise ShopImportError(f"{path}: not a readable Parquet file ({exc})") from None
        names = list(parquet.schema_arrow.names)
        _require_columns(path, names, required)
        wanted = required + [c for c in optional if c in names and c not in required]
        done = {"rows": 0}
        total = max(1, parquet.metadata.num_rows)

        def parquet_batches() -> Iterator[pa.RecordBatch]:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted):
                done["rows"] += batch.num_rows
                yield batch

        return _Batches(names, parquet_batches(), [], size, lambda: int(size * done["rows"] / total))

    names = _csv_names(path)
    _require_columns(path, names, required)
    wanted = required + [c for c in optional if c in names and c not in required]
    invalid: list[int] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append(int(row.number or 0))
        return "skip"

    raw = open(path, "rb")  # noqa: SIM115 - closed when the stream is exhausted
    stream = pa.PythonFile(raw, mode="r")
    source: Any = pa.CompressedInputStream(stream, "gzip") if path.name.lower().endswith(".gz") else stream
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(block_size=block_bytes, use_threads=True),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in wanted},
                include_columns=wanted,
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raw.close()
        raise ShopImportError(f"{path}: cannot parse CSV ({exc})") from None

    def csv_batches() -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowException, OSError, EOFError) as exc:
                    raise ShopImportError(f"{path}: cannot parse CSV ({exc})") from None
                yield batch
        finally:
            raw.close()

    return _Batches(names, csv_batches(), invalid, size, lambda: raw.tell() if not raw.closed else size)


def _require_columns(path: Path, names: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ShopImportError(
            f"{path}: no column(s) {', '.join(map(repr, missing))} (the file has: {', '.join(names)}); "
            "name the shop's columns with --map, e.g. --map user_id=customer_id,item_id=sku"
        )


# ------------------------------------------------------------------------------------ normalizing


def _as_text(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(values.cast(pa.string()))


def _np(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _id_problems(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(missing, bad) masks of an id column as text: empty, too long or not printable."""
    missing = ~_np(pc.is_valid(values)) | _np(pc.equal(pc.utf8_length(values), 0))
    bad = ~missing & (
        _np(pc.greater(pc.utf8_length(values), MAX_ID_LENGTH)) | ~_np(pc.utf8_is_printable(values))
    )
    return missing, bad


class _ActionCoder:
    """The shop's event names → action codes (-1 unmapped, -2 skip), counting every raw name."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self.counts: Counter[str] = Counter()

    def target(self, name: str) -> str | None:
        if name in self.mapping:
            return self.mapping[name]
        return name if name in ACTION_NAMES else None

    def codes(self, names: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(names)
        labels = encoded.dictionary.to_pylist()
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        present = _np(pc.is_valid(encoded.indices))
        seen = np.bincount(indices[present].astype(np.int64), minlength=len(labels))
        lookup = np.empty(len(labels), dtype=np.int8)
        for i, label in enumerate(labels):
            self.counts[label] += int(seen[i])
            target = self.target(label)
            lookup[i] = -1 if target is None else -2 if target == SKIP else ACTION_NAMES.index(target)
        out = np.full(len(names), -3, dtype=np.int8)  # -3: no event name at all
        out[present] = lookup[indices[present].astype(np.int64)]
        return out

    def unmapped(self) -> dict[str, int]:
        return {n: c for n, c in self.counts.most_common() if self.target(n) is None}

    def applied(self) -> dict[str, str]:
        return {n: t for n in sorted(self.counts) if (t := self.target(n)) is not None}


@dataclass
class _Normalizer:
    opts: ImportOptions
    coder: _ActionCoder
    skipped: Counter[str] = field(default_factory=Counter)
    ts_format: str | None = None

    def batch(self, batch: pa.RecordBatch) -> pa.Table:
        o = self.opts
        n = batch.num_rows
        drop = np.zeros(n, dtype=bool)

        def count(reason: str, mask: np.ndarray) -> None:
            nonlocal drop
            new = mask & ~drop
            if new.any():
                self.skipped[reason] += int(new.sum())
                drop |= new

        raw_ts = batch.column(o.source("ts"))
        if self.ts_format is None:
            self.ts_format = detect_format(raw_ts)
        ts, bad_ts = to_unix_seconds(raw_ts, self.ts_format or "unix seconds")
        count("missing ts", ~_np(pc.is_valid(raw_ts)))
        count("bad ts (not a timestamp, or before 1990 / after 2100)", bad_ts)
        columns: dict[str, pa.Array] = {"ts": ts}
        for name in ("user_id", "item_id"):
            values = _as_text(batch.column(o.source(name)))
            missing, bad = _id_problems(values)
            count(f"missing {name}", missing)
            count(f"bad {name} (longer than {MAX_ID_LENGTH} characters or not printable)", bad)
            columns[name] = values
        action_text = _as_text(batch.column(o.source("action")))
        codes = self.coder.codes(action_text)
        count("missing action", codes == -3)
        count("event name not mapped", codes == -1)
        count("event name mapped to skip", codes == -2)
        columns["action"] = pa.array(codes)
        for name in EVENT_OPTIONAL:
            src = o.columns.get(name, name)
            if src not in batch.schema.names:
                continue
            if name == "value":
                text = _as_text(batch.column(src))
                number = pc.cast(pc.if_else(_np(pc.equal(text, "")), None, text), pa.float64(), safe=False)
                columns[name] = number
            else:
                values = _as_text(batch.column(src))
                values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
                if name in ID_FIELDS:
                    _, bad = _id_problems(pc.fill_null(values, "x"))
                    count(f"bad {name}", bad)
                columns[name] = values
        table = pa.table(columns)
        return table.filter(pa.array(~drop)) if drop.any() else table


def _read_events(opts: ImportOptions) -> tuple[pa.Table, int, _Normalizer, int]:
    """Every kept event (unsorted), rows read, the normalizer (counts) and the invalid-row count."""
    required = [opts.source(c) for c in EVENT_REQUIRED]
    optional = [opts.source(c) for c in EVENT_OPTIONAL]
    stream = _open_events(opts.events, required, optional, opts.block_bytes)
    norm = _Normalizer(opts, _ActionCoder(opts.actions))
    parts: list[pa.Table] = []
    rows = 0
    with progress(
        total=stream.size, unit="B", unit_scale=True, desc="import: events", enabled=opts.progress
    ) as bar:
        for batch in stream.batches:
            rows += batch.num_rows
            parts.append(norm.batch(batch))
            bar.update(stream.position() - bar.n)
    invalid = len(stream.invalid_rows)
    if invalid:
        norm.skipped[WRONG_FIELDS] += invalid
    if norm.ts_format is None:
        norm.ts_format = "none (no rows)"
    schema = parts[0].schema if parts else None
    table = pa.concat_tables(parts, promote_options="permissive") if parts else None
    if table is None or schema is None:
        raise ShopImportError(f"{opts.events}: no event rows")
    return table, rows + invalid, norm, invalid


# ------------------------------------------------------------------------------------- side tables


@dataclass(frozen=True)
class _Side:
    name: str
    required: tuple[str, ...]
    optional: dict[str, Any]
    ids: tuple[str, ...]
    times: tuple[str, ...] = ()


_SIDES: dict[str, _Side] = {
    "items": _Side("items", ("item_id",), dict(DEFAULT_ITEM), ("item_id", "merchant_id")),
    "kols": _Side("kols", ("kol_id",), {"verticals": DEFAULT_VERTICALS}, ("kol_id",)),
    "posts": _Side(
        "posts",
        ("post_id", "kol_id", "item_id"),
        {"created_at": None},
        ("post_id", "kol_id", "item_id"),
        ("created_at",),
    ),
    "follows": _Side("follows", ("user_id", "kol_id"), {"ts": None}, ("user_id", "kol_id"), ("ts",)),
    "friends": _Side("friends", ("user_id", "friend_id"), {}, ("user_id", "friend_id")),
}


def _read_whole(path: Path) -> pa.Table:
    if not path.is_file():
        raise ShopImportError(f"{path}: no such file")
    try:
        if table_format(path) == "parquet":
            return pq.read_table(path)
        return pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(strings_can_be_null=True, null_values=[""]),
            read_options=pcsv.ReadOptions(use_threads=True),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise ShopImportError(f"{path}: cannot read ({exc})") from None


def _read_side(path: Path, side: _Side, opts: ImportOptions, first_ts: int, report: ImportReport) -> pa.Table:
    """A catalogue/social file with our column names (or the shop's, as given to ``--map``), ids as
    text, missing optional values filled with recorded defaults; a missing id is an error."""
    raw = _read_whole(path)
    renames = {opts.columns[f]: f for f in side.required + tuple(side.optional) if f in opts.columns}
    raw = raw.rename_columns(
        [renames[c] if c in renames and renames[c] not in raw.column_names else c for c in raw.column_names]
    )
    missing = [c for c in side.required if c not in raw.column_names]
    if missing:
        raise ShopImportError(
            f"{path}: no column(s) {', '.join(map(repr, missing))} for {side.name} "
            f"(the file has: {', '.join(raw.column_names)})"
        )
    is_csv = table_format(path) == "csv"
    columns: dict[str, pa.Array] = {}
    for name in side.required + tuple(side.optional):
        present = name in raw.column_names
        values = raw.column(name).combine_chunks() if present else pa.nulls(raw.num_rows)
        if name in side.ids:
            text = _as_text(values) if present else pa.nulls(raw.num_rows, pa.string())
            missing_id, bad = _id_problems(text)
            if name in side.required and (missing_id | bad).any():
                row = int(np.flatnonzero(missing_id | bad)[0])
                line = f"row {row + 2}" if is_csv else f"row {row + 1}"
                what = "empty" if missing_id[row] else f"{text[row].as_py()[:40]!r} is not a valid id"
                raise ShopImportError(f"{path}, {line}, column {name!r}: {what}")
            if name not in side.required:
                fill = side.optional[name]
                filled = int(missing_id.sum())
                if filled:
                    report.defaults[f"{side.name}.{name} empty → {fill!r}"] = filled
                text = pc.if_else(pa.array(missing_id), pa.scalar(str(fill)), text)
            columns[name] = text
        elif name in side.times:
            fmt = detect_format(values) if present else None
            if fmt is None:
                ts = pa.array(np.full(raw.num_rows, first_ts, dtype=np.int64))
                filled = raw.num_rows
            else:
                ts, bad = to_unix_seconds(values, fmt)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    line = f"row {row + 2}" if is_csv else f"row {row + 1}"
                    raise ShopImportError(
                        f"{path}, {line}, column {name!r}: {values[row].as_py()!r} is not a timestamp"
                    )
                filled = ts.null_count
                ts = pc.fill_null(ts, first_ts)
            if filled:
                report.defaults[f"{side.name}.{name} empty → first event time"] = filled
            columns[name] = ts
        else:
            default = side.optional[name]
            target = _default_type(default)
            converted = _convert_optional(path, name, values, target, is_csv)
            filled = converted.null_count
            if filled:
                report.defaults[f"{side.name}.{name} empty → {default!r}"] = filled
                converted = pc.fill_null(converted, pa.scalar(default, target))
            columns[name] = converted
    return pa.table(columns)


def _default_type(default: Any) -> pa.DataType:
    if isinstance(default, bool):
        return pa.bool_()
    if isinstance(default, float):
        return pa.float64()
    return pa.string()


def _convert_optional(path: Path, name: str, values: pa.Array, target: pa.DataType, is_csv: bool) -> pa.Array:
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), target)
    if pa.types.is_string(target):
        return _as_text(values)
    if pa.types.is_boolean(target) and not pa.types.is_boolean(values.type):
        text = pc.utf8_lower(_as_text(values))
        truth = pc.is_in(text, value_set=pa.array(["true", "1", "yes", "y", "t"]))
        known = pc.or_(truth, pc.is_in(text, value_set=pa.array(["false", "0", "no", "n", "f"])))
        bad = _np(pc.is_valid(text)) & ~_np(known)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            line = f"row {row + 2}" if is_csv else f"row {row + 1}"
            raise ShopImportError(f"{path}, {line}, column {name!r}: {text[row].as_py()!r} is not true/false")
        return pc.if_else(pc.is_valid(text), truth, pa.scalar(None, pa.bool_()))
    try:
        out = pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ShopImportError(f"{path}, column {name!r}: values are not {target}") from None
    if pa.types.is_floating(target):
        finite = _np(pc.is_finite(out)) | ~_np(pc.is_valid(out))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            line = f"row {row + 2}" if is_csv else f"row {row + 1}"
            raise ShopImportError(f"{path}, {line}, column {name!r}: not a finite number")
    return out


# ------------------------------------------------------------------------------------------ building


def _dedup_sort(events: pa.Table) -> tuple[pa.Table, int]:
    """Events sorted by time, exact repeats (user, item, action, ts) removed; returns the count removed."""
    ts = events.column("ts").to_numpy()
    user = pc.dictionary_encode(events.column("user_id").combine_chunks()).indices.to_numpy()
    item = pc.dictionary_encode(events.column("item_id").combine_chunks()).indices.to_numpy()
    action = events.column("action").to_numpy()
    order = np.lexsort((action, item, user, ts))
    same = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        a, b = order[1:], order[:-1]
        same[1:] = (ts[a] == ts[b]) & (user[a] == user[b]) & (item[a] == item[b]) & (action[a] == action[b])
    del user, item
    keep = order[~same]
    return events.take(pa.array(keep)), int(same.sum())


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


def _merge_ids(known: pa.Array, extra: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(ids in ``extra`` not in ``known`` (distinct), all ids)."""
    new = pc.unique(extra.filter(pc.invert(pc.is_in(extra, value_set=known))))
    return new, pa.concat_arrays([known, new.cast(known.type)])


def _distinct(*arrays: pa.Array | pa.ChunkedArray) -> pa.Array:
    parts = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return pc.unique(pa.concat_arrays([p.cast(pa.string()) for p in parts]).drop_null())


def import_shop(opts: ImportOptions) -> ImportReport:
    """Import ``opts.events`` (plus any catalogue/social files) into the world directory ``opts.out``."""
    out = Path(opts.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not opts.overwrite:
        raise ShopImportError(f"{out}: exists and is not empty (choose another --out, or pass --overwrite)")
    events, rows_read, norm, _ = _read_events(opts)
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
        raise ShopImportError(f"{opts.events}: {events.num_rows} usable event(s); need at least 2 to split")

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
        name: _read_side(path, _SIDES[name], opts, first_ts, report)
        for name, path in (
            ("items", opts.items),
            ("kols", opts.creators),
            ("posts", opts.posts),
            ("follows", opts.follows),
            ("friends", opts.friends),
        )
        if path is not None
    }
    events = _drop_unknown_posts(events, sides.get("posts"), report)
    tables = _assemble(events, sides, report, first_ts)
    report.users = tables["users"].num_rows
    report.items = tables["items"].num_rows
    report.split = {"cut_ts": cut, "cut": iso(cut), "n_train": k, "n_test": len(ts) - k}
    _write(out, tables, events, k, report, opts)
    return report


def _assemble(
    events: pa.Table, sides: dict[str, pa.Table], report: ImportReport, first_ts: int
) -> dict[str, pa.Table]:
    """users/items/kols/... tables covering every id the events and social tables reference; ids
    nobody listed are added with recorded defaults (counted), so every reference resolves."""
    ev_users = _distinct(
        events.column("user_id"),
        *([events.column("to_user_id")] if "to_user_id" in events.column_names else []),
    )
    social_users = [
        sides[t].column(c)
        for t, c in (("follows", "user_id"), ("friends", "user_id"), ("friends", "friend_id"))
        if t in sides
    ]
    users = _distinct(ev_users, *social_users)
    first = events.group_by("user_id").aggregate([("ts", "min")])
    created = pc.index_in(users, value_set=first.column("user_id"))
    first_seen = first.column("ts_min").combine_chunks()
    created_at = pc.fill_null(pc.take(first_seen, created), first_ts)
    no_event = int(pc.sum(pc.is_null(created)).as_py() or 0)
    if no_event:
        report.defaults[
            "users without events (from follows/friends/shares): created_at = first event time"
        ] = no_event
    out: dict[str, pa.Table] = {
        "users": pa.table(
            {"user_id": users, "created_at": created_at, "segment": pa.array([DEFAULT_SEGMENT] * len(users))}
        )
    }

    ev_items = _distinct(
        events.column("item_id"), *([sides["posts"].column("item_id")] if "posts" in sides else [])
    )
    catalogue = sides.get("items")
    if catalogue is None:
        catalogue = pa.table(
            {"item_id": pa.array([], pa.string())}
            | {k: pa.array([], _default_type(v)) for k, v in DEFAULT_ITEM.items()}
        )
    catalogue = _unique_rows(catalogue, "item_id", "items", report)
    new_items, _ = _merge_ids(catalogue.column("item_id").combine_chunks(), ev_items)
    if len(new_items):
        report.defaults[
            "items with no catalogue row: " + ", ".join(f"{k}={v!r}" for k, v in DEFAULT_ITEM.items())
        ] = len(new_items)
        filler = pa.table(
            {"item_id": new_items.cast(pa.string())}
            | {k: pa.array([v] * len(new_items), _default_type(v)) for k, v in DEFAULT_ITEM.items()}
        )
        catalogue = pa.concat_tables([catalogue.select(filler.column_names).cast(filler.schema), filler])
    out["items"] = catalogue

    kol_refs = [sides[t].column("kol_id") for t in ("posts", "follows") if t in sides]
    if "kol_id" in events.column_names:
        kol_refs.append(events.column("kol_id"))
    if "kols" in sides or kol_refs:
        kols = sides.get(
            "kols", pa.table({"kol_id": pa.array([], pa.string()), "verticals": pa.array([], pa.string())})
        )
        kols = _unique_rows(kols, "kol_id", "kols", report)
        if kol_refs:
            new_kols, _ = _merge_ids(kols.column("kol_id").combine_chunks(), _distinct(*kol_refs))
            if len(new_kols):
                report.defaults["creators referenced but not listed: verticals ''"] = len(new_kols)
                kols = pa.concat_tables(
                    [
                        kols,
                        pa.table(
                            {
                                "kol_id": new_kols.cast(pa.string()),
                                "verticals": pa.array([DEFAULT_VERTICALS] * len(new_kols)),
                            }
                        ),
                    ]
                )
        out["kols"] = kols
    for name in ("posts", "follows", "friends"):
        if name in sides:
            out[name] = (
                _unique_rows(sides[name], "post_id", "posts", report) if name == "posts" else sides[name]
            )
    return out


def _drop_unknown_posts(events: pa.Table, posts: pa.Table | None, report: ImportReport) -> pa.Table:
    """Empty an event's post_id that no posts row holds (a post needs a creator and an item, which
    an event alone does not give); counted, the event itself is kept."""
    if "post_id" not in events.column_names:
        return events
    column = events.column("post_id")
    known = posts.column("post_id") if posts is not None else pa.array([], pa.string())
    unknown = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=known)))
    count = int(pc.sum(unknown).as_py() or 0)
    if not count:
        return events
    report.defaults["events whose post_id is not in posts: post_id emptied"] = count
    emptied = pc.if_else(unknown, pa.scalar(None, pa.string()), column)
    return events.set_column(events.column_names.index("post_id"), "post_id", emptied)


def _unique_rows(table: pa.Table, key: str, name: str, report: ImportReport) -> pa.Table:
    """First row per id (a repeated catalogue row is counted, not silently merged)."""
    ids = table.column(key).combine_chunks()
    encoded = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(encoded, return_index=True)
    if len(first) == table.num_rows:
        return table
    report.defaults[f"{name}: repeated {key} rows, first kept"] = table.num_rows - len(first)
    return table.take(pa.array(np.sort(first)))


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

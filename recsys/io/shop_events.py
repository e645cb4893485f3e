"""Reading a shop's events file (CSV, CSV.gz, Parquet) block by block, each block reduced to compact
columns: int64 seconds, an int8 action code, the id strings; every dropped row counted per reason.

Why blocks: a 10M-row export is read with bounded working memory beyond the kept columns, and the
timestamp unit is decided once, from the first block (``recsys.io.timestamps``).
"""

from __future__ import annotations

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
from recsys.io.shop_options import (
    EVENT_OPTIONAL,
    EVENT_REQUIRED,
    ID_FIELDS,
    ITEM_FIELDS,
    PARQUET_BATCH,
    SKIP,
    WRONG_FIELDS,
    ImportOptions,
    ShopImportError,
)
from recsys.io.tables import table_format, text_columns
from recsys.io.timestamps import detect_format, to_unix_seconds
from recsys.progress import progress
from recsys.schema import ACTION_NAMES

# ---------------------------------------------------------------------------------------- reading


@dataclass
class _Batches:
    """The events file as a stream of record batches plus how far through the file we are."""

    names: list[str]
    batches: Iterator[pa.RecordBatch]
    invalid_rows: list[int]
    size: int
    position: Any


def _csv_names(path: Path, delimiter: str) -> list[str]:
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 16),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda row: "skip"),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise ShopImportError(f"{path}: cannot read the CSV header ({exc})") from None
    names = list(reader.schema.names)
    reader.close()
    return names


def _open_events(opts: ImportOptions, required: list[str], optional: list[str]) -> _Batches:
    """Batches of the required columns and of the optional ones the file has."""
    path = opts.events
    if not path.is_file():
        raise ShopImportError(f"{path}: no such file")
    size = path.stat().st_size
    if table_format(path) == "parquet":
        if opts.header is not None or opts.delimiter != ",":
            raise ShopImportError(f"{path}: --columns and --delimiter are for CSV files, not Parquet")
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
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
                done["rows"] += batch.num_rows
                yield batch

        return _Batches(names, parquet_batches(), [], size, lambda: int(size * done["rows"] / total))

    names = list(opts.header) if opts.header is not None else _csv_names(path, opts.delimiter)
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
            read_options=pcsv.ReadOptions(
                block_size=opts.block_bytes, use_threads=True, column_names=opts.header
            ),
            parse_options=pcsv.ParseOptions(delimiter=opts.delimiter, invalid_row_handler=on_invalid),
            convert_options=text_columns(wanted),
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
        hint = "name the shop's columns with --map, e.g. --map user_id=customer_id,item_id=sku"
        if any(_looks_like_data(n) for n in names):
            hint += "; if the file has no header line, name its columns with --columns"
        raise ShopImportError(
            f"{path}: no column(s) {', '.join(map(repr, missing))} (the file has: {', '.join(names)}); {hint}"
        )


def _looks_like_data(name: str) -> bool:
    """A header cell that is a number or empty: the first line is probably a data row."""
    text = name.strip()
    return not text or text.replace(".", "", 1).lstrip("-").isdigit()


# ------------------------------------------------------------------------------------ normalizing


def as_text(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(values.cast(pa.string()))


def true_mask(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def id_problems(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(missing, bad) masks of an id column as text: empty, too long or not printable."""
    missing = ~true_mask(pc.is_valid(values)) | true_mask(pc.equal(pc.utf8_length(values), 0))
    bad = ~missing & (
        true_mask(pc.greater(pc.utf8_length(values), MAX_ID_LENGTH))
        | ~true_mask(pc.utf8_is_printable(values))
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
        present = true_mask(pc.is_valid(encoded.indices))
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
        count("missing ts", ~true_mask(pc.is_valid(raw_ts)))
        count("bad ts (not a timestamp, or before 1990 / after 2100)", bad_ts)
        columns: dict[str, pa.Array] = {"ts": ts}
        for name in ("user_id", "item_id"):
            values = as_text(batch.column(o.source(name)))
            missing, bad = id_problems(values)
            count(f"missing {name}", missing)
            count(f"bad {name} (longer than {MAX_ID_LENGTH} characters or not printable)", bad)
            columns[name] = values
        action_text = as_text(batch.column(o.source("action")))
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
                text = as_text(batch.column(src))
                empty = true_mask(pc.equal(text, ""))
                number = pc.cast(pc.if_else(empty, None, text), pa.float64(), safe=False)
                columns[name] = number
            else:
                values = as_text(batch.column(src))
                values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
                if name in ID_FIELDS:
                    _, bad = id_problems(pc.fill_null(values, "x"))
                    count(f"bad {name}", bad)
                columns[name] = values
        for name in ITEM_FIELDS:
            src = o.columns.get(name, name)
            if src in batch.schema.names:
                values = as_text(batch.column(src))
                columns[f"item_{name}"] = pc.if_else(
                    pc.equal(values, ""), pa.scalar(None, pa.string()), values
                )
        table = pa.table(columns)
        return table.filter(pa.array(~drop)) if drop.any() else table


def read_events(opts: ImportOptions) -> tuple[pa.Table, int, _Normalizer, int]:
    """Every kept event (unsorted), rows read, the normalizer (counts) and the invalid-row count."""
    required = [opts.source(c) for c in EVENT_REQUIRED]
    optional = [opts.source(c) for c in EVENT_OPTIONAL + ITEM_FIELDS]
    stream = _open_events(opts, required, optional)
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

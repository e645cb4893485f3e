"""The one validating loader for every table (users, items, ..., events) in Parquet or CSV.

Why one loader: every consumer (training, serving, the world check command) must see the same
columns, the same types and the same rules about bad rows. Strict tables reject a file on its first
bad row with a :class:`TableError` naming file, row, column, value and expected type; lenient tables
(event logs, where a few broken rows must not stop training) drop bad rows and count them per reason.

Speed: the happy path is vectorised (pyarrow reads, ``pyarrow.compute`` casts and checks); per-row
Python work happens only to describe rows that are already known to be bad.

Id columns (``Column.id_kind``) hold a shop's own ids: strings or integers (a column typed as
either). They are turned into int64 keys with :mod:`recsys.ids` (surrounding whitespace trimmed,
as for every other value read from a file), and the labels of hashed string ids are returned with
the table (``LoadResult.labels``). An id that is too long or not printable is a bad value like any
other: a counted skip in lenient tables, a :class:`TableError` naming file, row and column in strict
ones.

Row numbers are 1-based. For CSV they are line numbers in the file (the header is line 1; blank
lines are skipped by the reader but still counted), so they match what a person sees in an editor.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from recsys.id_labels import IdLabels
from recsys.ids import MAX_ID_LENGTH, IdError, check_id, text_keys
from recsys.io.errors import TableError
from recsys.io.report import MAX_EXAMPLES, LoadReport, LoadResult
from recsys.schema import Column, TableSchema

SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".csv.gz")
"""File name endings :func:`load_table` reads, in the order a directory lookup prefers them."""

WRONG_FIELD_COUNT = "wrong field count"

# Prefilters for the (rare) failing-cast path. They may be looser than arrow's parser (a bisection
# confirms the survivors), but never stricter, so the happy path and the error path agree.
_INT_PATTERN = r"^-?(?:[0-9]+|0[xX][0-9a-fA-F]+)$"
_FLOAT_PATTERN = r"(?i)^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)$"
_TRUE = pa.array(["true", "1"])
_FALSE = pa.array(["false", "0"])
_MAX_VALUE_CHARS = 60


def text_columns(names: list[str]) -> pcsv.ConvertOptions:
    """CSV conversion that reads only ``names``, each as text; an empty unquoted field is null, a
    quoted empty one the empty string (types are the loaders' business, with their own errors)."""
    return pcsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        include_columns=names,
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=False,
    )


def table_format(path: str | Path) -> str:
    """``"parquet"`` or ``"csv"`` from the file name; anything else is a :class:`TableError`."""
    name = Path(path).name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    raise TableError(path, f"unsupported file type; expected a name ending in {', '.join(SUFFIXES)}")


def find_table_file(directory: str | Path, name: str) -> Path | None:
    """``DIR/name.parquet`` (preferred), ``.csv`` or ``.csv.gz``, whichever exists first."""
    for suffix in SUFFIXES:
        candidate = Path(directory) / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_table(path: str | Path, schema: TableSchema) -> LoadResult:
    """Read and validate one table file; the result is in exactly ``schema.arrow_schema()``."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise TableError(path, "no such file")
    source = _read_parquet(path, schema) if fmt == "parquet" else _read_csv(path, schema)
    return _validate(path, schema, source)


# --------------------------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """Raw columns as read (any type), plus what is needed to describe rows by number."""

    columns: dict[str, pa.Array]
    n_rows: int
    extra: tuple[str, ...]
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)
    """CSV lines whose field count is wrong: (line number, problem)."""
    csv_lines: _CsvLines | None = None
    _line_of_row: np.ndarray | None = None

    def row_numbers(self, indices: np.ndarray) -> list[int]:
        """Human row numbers of data rows given by 0-based index."""
        if self.csv_lines is None:
            return [int(i) + 1 for i in indices]
        if self._line_of_row is None:
            skipped = np.asarray([line for line, _ in self.invalid_lines], dtype=np.int64)
            self._line_of_row = self.csv_lines.data_lines(skipped)
        return [int(self._line_of_row[i]) for i in indices]


class _CsvLines:
    """Where each line of a CSV file is, computed only when rows must be described by line number.

    The reader skips blank lines and (here) rows with a wrong field count, so the data row index
    alone does not give the line a person would open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: bytes | None = None
        self._starts = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int64)
        self._nonempty = np.zeros(0, dtype=np.int64)

    def _scan(self) -> None:
        if self._data is not None:
            return
        with pa.input_stream(str(self.path), compression="detect") as stream:
            self._data = stream.read()
        buf = np.frombuffer(self._data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == ord("\n"))
        starts = np.concatenate([[0], newlines + 1])
        ends = np.concatenate([newlines, [len(buf)]])
        lengths = ends - starts
        if len(buf):
            last = np.where(lengths > 0, ends - 1, 0)
            lengths = lengths - ((lengths > 0) & (buf[last] == ord("\r")))
        self._starts, self._lengths = starts, lengths
        self._nonempty = np.flatnonzero(lengths > 0)  # 0-based indices of lines the reader sees

    def line_of_reader_row(self, number: int) -> int:
        """Line number of the reader's 1-based row ``number`` (header included, blank lines not)."""
        self._scan()
        return int(self._nonempty[number - 1]) + 1

    def lines_with_text(self, texts: list[str]) -> list[int] | None:
        """For each text, a distinct line holding exactly it, in file order among equal texts
        (None if some text is not found as often as it is listed)."""
        self._scan()
        assert self._data is not None
        wanted: dict[bytes, int] = {}
        for text in texts:
            key = text.encode("utf-8")
            wanted[key] = wanted.get(key, 0) + 1
        hits: dict[bytes, list[int]] = {}
        for key, count in wanted.items():
            candidates = self._nonempty[self._lengths[self._nonempty] == len(key)]
            hits[key] = [
                int(i) + 1
                for i in candidates
                if self._data[int(self._starts[i]) : int(self._starts[i]) + len(key)] == key
            ]
            if len(hits[key]) != count:
                return None
        return [hits[text.encode("utf-8")].pop(0) for text in texts]

    def data_lines(self, skipped: np.ndarray) -> np.ndarray:
        """Line number of each data row: non-blank lines minus the header and the skipped lines."""
        self._scan()
        lines = self._nonempty[1:] + 1
        return lines[~np.isin(lines, skipped)]


def check_header(path: Path, schema: TableSchema, names: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Columns to read and extra columns; raises when a required column is missing or doubled."""
    wanted = set(schema.column_names)
    doubled = sorted({n for n in names if n in wanted and names.count(n) > 1})
    if doubled:
        raise TableError(
            path, f"column(s) {', '.join(map(repr, doubled))} appear more than once in the header"
        )
    missing = [c.name for c in schema.columns if c.name not in names and not c.nullable]
    if missing:
        found = ", ".join(names) if names else "no columns"
        raise TableError(
            path,
            f"missing required column(s) {', '.join(map(repr, missing))} for table {schema.name!r} "
            f"(the file has: {found})",
        )
    present = [c for c in schema.column_names if c in names]
    extra = tuple(n for n in names if n not in wanted)
    return present, extra


def _read_parquet(path: Path, schema: TableSchema) -> _Source:
    try:
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(path, f"not a readable Parquet file ({exc})") from None
    present, extra = check_header(path, schema, names)
    try:
        table = parquet.read(columns=present)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(path, f"cannot read Parquet data ({exc})") from None
    columns = {name: table.column(name).combine_chunks() for name in present}
    return _Source(columns=columns, n_rows=table.num_rows, extra=extra)


def _csv_header(path: Path) -> list[str]:
    """Column names from the first non-blank line (the reader skips blank lines too)."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            pending = b""
            while True:
                chunk = stream.read(1 << 16)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                if not chunk:
                    complete.append(pending)
                for line in complete:
                    line = line.rstrip(b"\r")
                    if line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]
                    if line:
                        header = pcsv.read_csv(io.BytesIO(line + b"\n"))
                        return list(header.column_names)
                if not chunk:
                    raise TableError(path, "empty CSV file (no header line)")
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise TableError(path, f"cannot read the CSV header ({exc})") from None


def _read_csv(path: Path, schema: TableSchema) -> _Source:
    names = _csv_header(path)
    present, extra = check_header(path, schema, names)
    invalid: list[tuple[int | None, str, int, int]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    def read(threads: bool) -> pa.Table:
        invalid.clear()
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(use_threads=threads),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=text_columns(present),
        )

    lines = _CsvLines(path)
    try:
        table = read(threads=True)
        located: list[int] | None = []
        if invalid:
            # a threaded read does not number invalid rows; find them by their text, and fall
            # back to a (slower) single-threaded read that numbers them if the text is ambiguous
            located = lines.lines_with_text([text for _, text, _, _ in invalid])
            if located is None:
                table = read(threads=False)
                located = [lines.line_of_reader_row(int(number or 1)) for number, _, _, _ in invalid]
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise TableError(path, f"cannot parse CSV ({exc})") from None
    problems = sorted(
        (line, f"expected {expected} fields, found {actual}")
        for line, (_, _, expected, actual) in zip(located or [], invalid, strict=True)
    )
    return _Source(
        columns={name: table.column(name).combine_chunks() for name in present},
        n_rows=table.num_rows,
        extra=extra,
        invalid_lines=problems,
        csv_lines=lines,
    )


# ---------------------------------------------------------------------------------------- converting


def _describe_type(col: Column) -> str:
    t = col.type
    if col.id_kind is not None:
        return f"an id (a string of at most {MAX_ID_LENGTH} printable characters, or an integer)"
    if col.allowed is not None:
        return "one of " + ", ".join(col.allowed)
    if pa.types.is_integer(t):
        return f"an integer ({t})"
    if pa.types.is_floating(t):
        return f"a finite number ({'float64' if t == pa.float64() else t})"
    if pa.types.is_boolean(t):
        return "a boolean (true/false/1/0)"
    return str(t)


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A pyarrow boolean array as numpy, nulls as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _null_out(values: pa.Array, bad: np.ndarray) -> pa.Array:
    if not bad.any():
        return values
    return pc.if_else(pa.array(bad), pa.scalar(None, values.type), values)


def _failing_casts(strings: pa.Array, indices: np.ndarray, target: pa.DataType) -> list[int]:
    """Indices whose cast fails, by bisection: cheap when (as usual) few values fail."""
    if len(indices) == 0:
        return []
    try:
        pc.cast(strings.take(pa.array(indices)), target)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(indices) == 1:
            return [int(indices[0])]
    half = len(indices) // 2
    return _failing_casts(strings, indices[:half], target) + _failing_casts(strings, indices[half:], target)


def _parse_strings(strings: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast text to ``target``; returns values (bad entries null) and the bad mask."""
    n = len(strings)
    if pa.types.is_string(target):
        return strings, np.zeros(n, dtype=bool)
    trimmed = pc.utf8_trim_whitespace(strings)
    if pa.types.is_boolean(target):
        lower = pc.utf8_lower(trimmed)
        is_true = pc.is_in(lower, value_set=_TRUE)
        known = _mask(pc.or_(is_true, pc.is_in(lower, value_set=_FALSE)))
        bad = _mask(pc.is_valid(trimmed)) & ~known
        values = pc.if_else(pc.is_null(trimmed), pa.scalar(None, pa.bool_()), is_true)
        return _null_out(values, bad), bad
    try:
        return pc.cast(trimmed, target), np.zeros(n, dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    valid = _mask(pc.is_valid(trimmed))
    if pa.types.is_integer(target):
        bad = valid & ~_mask(pc.match_substring_regex(trimmed, _INT_PATTERN))
    elif pa.types.is_floating(target):
        bad = valid & ~_mask(pc.match_substring_regex(trimmed, _FLOAT_PATTERN))
    else:
        bad = np.zeros(n, dtype=bool)
    bad[_failing_casts(trimmed, np.flatnonzero(valid & ~bad), target)] = True
    return pc.cast(_null_out(trimmed, bad), target), bad


_IdColumn = tuple[pa.Array, np.ndarray, np.ndarray, pa.Array]
"""An id column converted: keys (bad entries null), bad mask, hashed keys seen, their labels."""


def _id_keys_of_text(text: pa.Array, field: str) -> _IdColumn:
    """Keys of string ids (bad entries null), the bad mask, and the hashed (keys, labels) seen.
    Each distinct id is validated and keyed once (:func:`recsys.ids.text_keys`)."""
    n = len(text)
    encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(text))
    distinct = encoded.dictionary
    if len(distinct) == 0:
        return (
            pa.nulls(n, pa.int64()),
            np.zeros(n, dtype=bool),
            np.zeros(0, np.int64),
            pa.array([], pa.string()),
        )
    keys, invalid = text_keys(distinct, field)
    valid = _mask(pc.is_valid(encoded.indices))
    codes = np.asarray(pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    bad = valid & invalid[codes]
    values = pa.array(keys[codes], pa.int64(), mask=~valid | bad)
    hashed = (keys < 0) & ~invalid
    return values, bad, keys[hashed], distinct.filter(pa.array(hashed))


def _convert_ids(path: Path, raw: pa.Array, col: Column) -> _IdColumn:
    """An id column as int64 keys: integers are their own keys (negative ones hash as their
    decimal text), strings go through :func:`recsys.ids.id_key`. Also the hashed (keys, labels)."""
    if pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type):
        try:
            ints = pc.cast(raw, pa.int64())  # safe: fractional floats and huge uint64 fail
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ints = None
        if ints is not None:
            negative = _mask(pc.less(ints, 0))
            if not negative.any():
                return ints, np.zeros(len(raw), dtype=bool), np.zeros(0, np.int64), pa.array([], pa.string())
            raw = pc.cast(ints, pa.string())
    if not (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) or pa.types.is_null(raw.type)):
        try:
            raw = pc.cast(raw, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TableError(
                path, f"has type {raw.type}, which cannot become {_describe_type(col)}", column=col.name
            ) from None
    return _id_keys_of_text(raw.cast(pa.string()), col.name)


def _convert(
    path: Path, raw: pa.Array, col: Column, labels: IdLabels | None = None
) -> tuple[pa.Array, np.ndarray]:
    """Values of ``col.type`` (bad entries null) and the mask of entries that are present but bad.
    Id columns add the labels of their hashed ids to ``labels``."""
    target = col.type
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    if col.id_kind is not None:
        values, bad, keys, texts = _convert_ids(path, raw, col)
        if labels is not None:
            labels.add(col.id_kind, keys, texts)
        return values, bad
    if raw.type == target:
        values, bad = raw, np.zeros(len(raw), dtype=bool)
    elif pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) or pa.types.is_null(raw.type):
        values, bad = _parse_strings(raw.cast(pa.string()), target)
    elif pa.types.is_timestamp(raw.type) and pa.types.is_integer(target):
        seconds = pc.cast(raw, pa.timestamp("s", tz=raw.type.tz), safe=False)
        values, bad = pc.cast(seconds, target), np.zeros(len(raw), dtype=bool)
    else:
        try:
            values, bad = pc.cast(raw, target), np.zeros(len(raw), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            try:
                as_text = pc.cast(raw, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise TableError(
                    path, f"has type {raw.type}, which cannot become {_describe_type(col)}", column=col.name
                ) from None
            values, bad = _parse_strings(as_text, target)
    if pa.types.is_floating(target):
        bad = bad | (_mask(pc.is_valid(values)) & ~_mask(pc.is_finite(values)))
    if col.allowed is not None:
        allowed = pa.array(list(col.allowed), type=values.type)
        bad = bad | (_mask(pc.is_valid(values)) & ~_mask(pc.is_in(values, value_set=allowed)))
    return _null_out(values, bad), bad


# ---------------------------------------------------------------------------------------- validating


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _validate(path: Path, schema: TableSchema, source: _Source) -> LoadResult:
    n = source.n_rows
    labels = IdLabels()
    arrays: list[pa.Array] = []
    problems: list[tuple[str, np.ndarray, Column]] = []  # (reason, rows, column) in schema order
    absent: list[str] = []
    for col in schema.columns:
        raw = source.columns.get(col.name)
        if raw is None:  # only nullable columns may be absent (checked with the header)
            absent.append(col.name)
            arrays.append(pa.nulls(n, type=col.type))
            continue
        try:
            values, bad = _convert(path, raw, col, labels)
        except IdError as exc:  # two distinct ids of the file share a key
            raise TableError(path, str(exc), column=col.name) from None
        if bad.any():
            problems.append((f"bad {col.name}", bad, col))
        if not col.nullable:
            null = _mask(pc.is_null(values)) & ~bad
            if null.any():
                problems.append((f"null {col.name}", null, col))
        arrays.append(values)
    table = pa.Table.from_arrays(arrays, schema=schema.arrow_schema())

    if not schema.lenient:
        _raise_first_problem(path, source, problems)
        report = LoadReport(
            file=str(path),
            table=schema.name,
            total_rows=n,
            kept_rows=n,
            extra_columns=source.extra,
            absent_columns=tuple(absent),
        )
        return LoadResult(table=table, report=report, labels=labels)

    skipped: dict[str, int] = {}
    examples: dict[str, list[int]] = {}
    if source.invalid_lines:
        skipped[WRONG_FIELD_COUNT] = len(source.invalid_lines)
        examples[WRONG_FIELD_COUNT] = [line for line, _ in source.invalid_lines[:MAX_EXAMPLES]]
    dropped = np.zeros(n, dtype=bool)
    for reason, rows, _ in problems:
        new = rows & ~dropped
        count = int(new.sum())
        if count:
            skipped[reason] = skipped.get(reason, 0) + count
            examples[reason] = source.row_numbers(np.flatnonzero(new)[:MAX_EXAMPLES])
            dropped |= new
    if dropped.any():
        table = table.filter(pa.array(~dropped))
    report = LoadReport(
        file=str(path),
        table=schema.name,
        total_rows=n + len(source.invalid_lines),
        kept_rows=table.num_rows,
        skipped=skipped,
        examples=examples,
        extra_columns=source.extra,
        absent_columns=tuple(absent),
    )
    return LoadResult(table=table, report=report, labels=labels)


def _raise_first_problem(path: Path, source: _Source, problems: list[tuple[str, np.ndarray, Column]]) -> None:
    """Strict tables: raise for the bad row that comes first in the file (ties: schema column order)."""
    best: tuple[int, TableError] | None = None
    for reason, rows, col in problems:
        index = int(np.argmax(rows))
        row = source.row_numbers(np.array([index]))[0]
        if best is not None and best[0] <= row:
            continue
        if reason.startswith("null "):
            error = row_error(path, col, row)
        else:
            error = row_error(path, col, row, source.columns[col.name][index].as_py(), empty=False)
        best = (row, error)
    for line, problem in source.invalid_lines[:1]:
        if best is None or line < best[0]:
            best = (line, TableError(path, problem, row=line))
    if best is not None:
        raise best[1]


def row_error(
    path: str | Path, col: Column, row: int | None, value: object = None, empty: bool = True
) -> TableError:
    """The error of a strict table's bad row: an empty required value, or a value that is not of the
    column's type (ids say why). Shared with the Spark engine so both engines word bad input alike."""
    if empty:
        return TableError(
            path,
            f"empty value, expected {_describe_type(col)}",
            row=row,
            column=col.name,
            expected=str(col.type),
        )
    if col.id_kind is not None:
        return TableError(
            path,
            f"value {_shown(value)} is not {_describe_type(col)}: {_id_problem(value, col.name)}",
            row=row,
            column=col.name,
            value=value,
            expected="id",
        )
    return TableError(
        path,
        f"value {_shown(value)} is not {_describe_type(col)}",
        row=row,
        column=col.name,
        value=value,
        expected=str(col.type),
    )


def _id_problem(value: object, field: str) -> str:
    """Why ``value`` is not an id (the :class:`IdError` text, without the field already named)."""
    text = str(value).strip() if value is not None else ""
    try:
        check_id(text, field)
    except IdError as exc:
        return str(exc).removeprefix(f"{field}: ")
    return "not accepted"

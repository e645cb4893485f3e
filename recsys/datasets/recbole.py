"""RecBole atomic ``.inter`` files: tab-separated, header fields ``name:type``
(e.g. ``user_id:token	item_id:token	rating:float	timestamp:float``).

Only the interaction file is needed for training. Tokens are external ids (strings or integers,
:mod:`recsys.ids`), held as int64 keys with the labels of string tokens; they are mapped to dense
indices and each user's history is split chronologically (shared with the MovieLens loader in
:mod:`recsys.datasets.split`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from recsys.datasets.split import chronological_split
from recsys.ids import IdError, check_id
from recsys.interactions import Interactions
from recsys.io.errors import DatasetError

USER_FIELD = "user_id"
ITEM_FIELD = "item_id"
RATING_FIELD = "rating"
TIME_FIELD = "timestamp"
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def read_tsv(path: Path, column_names: list[str], skip_rows: int = 0) -> pa.Table:
    """All columns as strings (types are checked per column afterwards); no quoting, as in RecBole."""
    try:
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=column_names, skip_rows=skip_rows),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in column_names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: cannot parse tab-separated file ({exc})") from None


def read_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the header ({exc})") from None
    first = first.rstrip("\r\n")
    if not first:
        raise DatasetError(f"{path}, line 1: empty header")
    return first.split("\t")


def numeric_column(path: Path, table: pa.Table, name: str, header_lines: int) -> np.ndarray:
    """A column as float64; the error names the line (header lines counted) and the value."""
    column = table.column(name).combine_chunks()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    column = pc.utf8_trim_whitespace(column)
    try:
        values = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for index, value in enumerate(column.to_pylist()):  # error path only: find the culprit
            try:
                pc.cast(pa.array([value], pa.string()), pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DatasetError(
                    f"{path}, line {index + 1 + header_lines}, column {name!r}: {value!r} is not a number"
                ) from None
        raise
    null = pc.is_null(values)
    if pc.any(null).as_py():
        index = int(np.argmax(null.to_numpy(zero_copy_only=False)))
        raise DatasetError(f"{path}, line {index + 1 + header_lines}, column {name!r}: empty value")
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def id_column(path: Path, table: pa.Table, name: str, header_lines: int) -> pa.Array:
    """An id column as strings (tokens are external ids, :mod:`recsys.ids`); an empty, too long or
    non-printable id is a :class:`DatasetError` naming the line and column."""
    column = table.column(name).combine_chunks()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    null = pc.is_null(column)
    if pc.any(null).as_py():
        index = int(np.argmax(null.to_numpy(zero_copy_only=False)))
        raise DatasetError(f"{path}, line {index + 1 + header_lines}, column {name!r}: empty id")
    distinct = pc.unique(column).to_pylist()
    for value in distinct:
        try:
            check_id(value, name)
        except IdError as exc:
            index = int(pc.index(column, value).as_py())
            raise DatasetError(f"{path}, line {index + 1 + header_lines}, column {name!r}: {exc}") from None
    return column


def find_inter_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise DatasetError(f"{path}: no .inter file in this directory")
        raise DatasetError(f"{path}: several .inter files ({', '.join(f.name for f in found)}); name one")
    raise DatasetError(f"{path}: no such file or directory")


def load_recbole(
    path: str | Path, *, test_ratio: float = 0.2, min_rating: float | None = None
) -> Interactions:
    """Load a RecBole ``.inter`` file (or the directory holding exactly one) and split it per user."""
    file = find_inter_file(Path(path))
    fields: dict[str, str] = {}
    renamed: list[str] = []
    for header in read_header(file):
        name, sep, kind = header.partition(":")
        if not sep or kind not in FIELD_TYPES:
            raise DatasetError(
                f"{file}, line 1: header field {header!r} is not 'name:type' "
                f"with type in {', '.join(FIELD_TYPES)}"
            )
        fields[name] = kind
        renamed.append(name)
    if len(set(renamed)) != len(renamed):
        raise DatasetError(f"{file}, line 1: a field name appears twice in the header")
    table = read_tsv(file, renamed, skip_rows=1)
    for required in (USER_FIELD, ITEM_FIELD):
        if required not in fields:
            raise DatasetError(f"{file}: no {required!r} field in the header (has: {', '.join(renamed)})")
    users = id_column(file, table, USER_FIELD, 1)
    items = id_column(file, table, ITEM_FIELD, 1)
    if TIME_FIELD in fields:
        timestamps = numeric_column(file, table, TIME_FIELD, 1)
    else:
        timestamps = np.arange(table.num_rows, dtype=np.float64)  # file order stands in for time
    ratings = numeric_column(file, table, RATING_FIELD, 1) if RATING_FIELD in fields else None
    if min_rating is not None and ratings is None:
        raise DatasetError(f"{file}: min_rating given but there is no {RATING_FIELD!r} field")
    return chronological_split(
        users, items, timestamps, test_ratio=test_ratio, ratings=ratings, min_rating=min_rating
    )

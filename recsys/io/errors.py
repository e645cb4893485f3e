"""Error types for bad input data, so callers (the CLI above all) can catch *our* errors and print one
line naming the file, row and column instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Any problem with an input file or directory; the message names the file."""


class TableError(DataError):
    """A table file is unreadable or violates its schema.

    ``row`` is 1-based: for Parquet the data row, for CSV the line number in the file (the header is
    line 1), so it matches what a person sees when they open the file.
    """

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.file = str(file)
        self.problem = problem
        self.row = row
        self.column = column
        self.value = value
        self.expected = expected
        where = [self.file]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


class DatasetError(DataError):
    """A benchmark dataset (LightGCN, RecBole, MovieLens files) is missing or malformed."""

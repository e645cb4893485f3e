"""What a table load kept and dropped: lenient tables skip bad rows, and this report says how many
and why, so a silently shrinking event log is impossible to miss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from recsys.id_labels import IdLabels

MAX_EXAMPLES = 3
"""Row numbers kept per skip reason, enough to open the file and look."""


@dataclass
class LoadReport:
    file: str
    table: str
    total_rows: int
    kept_rows: int
    skipped: dict[str, int] = field(default_factory=dict)
    """Rows dropped per reason, e.g. ``{"bad action": 3, "bad ts": 1}``; each row counts once."""
    examples: dict[str, list[int]] = field(default_factory=dict)
    """Up to :data:`MAX_EXAMPLES` row numbers per reason (CSV: line numbers, header is line 1)."""
    extra_columns: tuple[str, ...] = ()
    """Columns in the file that the schema does not know; ignored."""
    absent_columns: tuple[str, ...] = ()
    """Nullable schema columns the file lacks; loaded as all-null."""

    @property
    def skipped_rows(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "table": self.table,
            "total_rows": self.total_rows,
            "kept_rows": self.kept_rows,
            "skipped_rows": self.skipped_rows,
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "extra_columns": list(self.extra_columns),
            "absent_columns": list(self.absent_columns),
        }

    def summary(self) -> str:
        lines = [f"{self.file} ({self.table}): {self.kept_rows:,} of {self.total_rows:,} rows kept"]
        for reason, count in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            rows = ", ".join(str(r) for r in self.examples.get(reason, []))
            lines.append(f"  skipped {count:,} ({reason}), e.g. rows {rows}")
        if self.extra_columns:
            lines.append(f"  ignored extra columns: {', '.join(self.extra_columns)}")
        if self.absent_columns:
            lines.append(f"  absent optional columns (all null): {', '.join(self.absent_columns)}")
        return "\n".join(lines)


@dataclass
class LoadResult:
    """A validated table in exactly the schema's column order and types, plus its load report."""

    table: pa.Table
    report: LoadReport
    labels: IdLabels = field(default_factory=IdLabels)
    """Labels of the hashed string ids in the table's id columns, per id kind."""


@dataclass
class RowsReport:
    """Rows a run read, kept and skipped (per reason) over every table it used, so a training run
    on a file with a third of its rows malformed says so (and fails above a threshold)."""

    tables: dict[str, LoadReport] = field(default_factory=dict)
    strict_format: str | None = None
    """Set for benchmark formats (LightGCN, RecBole, MovieLens): their loaders stop at the first
    malformed line, so a run that loaded skipped nothing (and rows are not counted per table)."""
    filtered_by: str | None = None
    """An option that leaves rows out on purpose (``min_rating=4``), said beside the strict note."""

    @property
    def read(self) -> int:
        return sum(r.total_rows for r in self.tables.values())

    @property
    def kept(self) -> int:
        return sum(r.kept_rows for r in self.tables.values())

    @property
    def skipped(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for report in self.tables.values():
            for reason, count in report.skipped.items():
                out[reason] = out.get(reason, 0) + count
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def skipped_fraction(self) -> float:
        return (self.read - self.kept) / self.read if self.read else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.read,
            "rows_kept": self.kept,
            "rows_skipped": self.read - self.kept,
            "skipped_fraction": round(self.skipped_fraction, 6),
            "skipped": self.skipped,
            "tables": {name: r.to_dict() for name, r in self.tables.items()},
            **({"strict_format": self.strict_format} if self.strict_format else {}),
            **({"filtered_by": self.filtered_by} if self.filtered_by else {}),
        }

    def lines(self) -> list[str]:
        if self.strict_format is not None:
            note = (
                f"; rows outside {self.filtered_by} are left out by that option" if self.filtered_by else ""
            )
            return [
                f"data: {self.strict_format} files are read strictly (a malformed line stops the run), "
                f"so nothing was skipped{note}"
            ]
        out = [
            f"data: read {self.read:,} rows, kept {self.kept:,}, skipped {self.read - self.kept:,} "
            f"({self.skipped_fraction:.2%})"
        ]
        for name, r in self.tables.items():
            if r.skipped_rows:
                out.append(f"  {name}: {r.kept_rows:,} of {r.total_rows:,} rows kept ({r.file})")
                for reason, count in sorted(r.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
                    rows = ", ".join(str(x) for x in r.examples.get(reason, []))
                    out.append(f"    skipped {count:,} ({reason}), e.g. rows {rows}")
        return out

"""Every reference between a world's tables, checked: an event's user must be in ``users``, a post's
creator in ``kols``, and so on. Each problem names the file, a row, the column and the missing id.

Why before training: a dangling reference otherwise surfaces mid-run as "not in the (empty) id map",
without saying which table lacks the id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recsys.io.world import World

REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    # (table, column, referenced table, referenced column)
    ("events", "user_id", "users", "user_id"),
    ("events", "item_id", "items", "item_id"),
    ("events", "post_id", "posts", "post_id"),
    ("events", "kol_id", "kols", "kol_id"),
    ("events", "to_user_id", "users", "user_id"),
    ("posts", "kol_id", "kols", "kol_id"),
    ("posts", "item_id", "items", "item_id"),
    ("follows", "user_id", "users", "user_id"),
    ("follows", "kol_id", "kols", "kol_id"),
    ("friends", "user_id", "users", "user_id"),
    ("friends", "friend_id", "users", "user_id"),
)
_KIND = {"users": "user", "items": "item", "kols": "kol", "posts": "post"}


@dataclass(frozen=True)
class ReferenceProblem:
    file: str
    row: int
    """1-based row of the first dangling reference (CSV: the line, header = line 1)."""
    exact_row: bool
    """False when the loader skipped bad rows of that file, so ``row`` counts kept rows only."""
    column: str
    missing_in: str
    example: str
    count: int

    def __str__(self) -> str:
        where = f"row {self.row}" if self.exact_row else f"kept row {self.row}"
        others = f" ({self.count:,} rows in all)" if self.count > 1 else ""
        missing = f"{self.example!r} is not in {self.missing_in}{others}"
        return f"{self.file}, {where}, column {self.column!r}: {missing}"


def _files(world: World, table: str) -> list[tuple[str, pa.Table]]:
    """(report name, loaded table) of every file holding rows of ``table`` (events: the split too)."""
    if table != "events":
        return [(table, getattr(world, table))]
    parts = [("events", world.events)]
    if world.train_events is not None and world.test_events is not None:
        parts += [("split/train", world.train_events), ("split/test", world.test_events)]
    return parts


def check_references(world: World) -> list[ReferenceProblem]:
    """Dangling references of ``world``, one per (file, column), in :data:`REFERENCES` order.
    References into an absent optional table count as dangling too (the table has no rows)."""
    problems: list[ReferenceProblem] = []
    for table, column, target, target_column in REFERENCES:
        known = np.unique(np.asarray(getattr(world, target).column(target_column).to_numpy(), dtype=np.int64))
        for name, data in _files(world, table):
            if column not in data.column_names or data.num_rows == 0:
                continue
            values = data.column(column)
            present = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            keys = np.asarray(values.fill_null(-1).to_numpy(), dtype=np.int64)
            pos = np.clip(np.searchsorted(known, keys), 0, max(len(known) - 1, 0))
            found = (known[pos] == keys) if len(known) else np.zeros(len(keys), dtype=bool)
            dangling = present & ~found
            if not dangling.any():
                continue
            index = int(np.flatnonzero(dangling)[0])
            report = world.reports.get(name)
            file = report.file if report is not None else name
            exact = report is None or report.skipped_rows == 0
            offset = 2 if exact and file.lower().endswith((".csv", ".csv.gz")) else 1
            try:
                example = world.labels.label(_KIND[target], int(keys[index]))
            except (KeyError, ValueError):
                example = str(int(keys[index]))
            problems.append(
                ReferenceProblem(
                    file=file,
                    row=index + offset,
                    exact_row=exact,
                    column=column,
                    missing_in=f"{target}.{target_column}"
                    + (" (the table is absent)" if target in world.absent else ""),
                    example=example,
                    count=int(dangling.sum()),
                )
            )
    return problems

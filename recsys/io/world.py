"""A world directory (synthetic or hand-made) loaded as validated tables in one call.

Layout: ``DIR/{users,items,kols,posts,follows,friends,events}.parquet`` (``.csv``/``.csv.gz`` also
read), ``DIR/split/{train,test}.parquet``, ``DIR/truth/`` and ``DIR/world.json``. Users, items and
events are required; kols, posts, follows and friends may be absent from hand-made datasets and
then load as empty tables of the right schema (listed in ``World.absent``).

Ids in every table may be strings or integers (:mod:`recsys.ids`); the tables hold int64 keys and
``World.labels`` the text of every hashed id, per kind, checked for collisions across all tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from recsys.id_labels import IdLabels
from recsys.ids import IdError
from recsys.io.errors import DataError, TableError
from recsys.io.report import LoadReport
from recsys.io.tables import SUFFIXES, find_table_file, load_table
from recsys.progress import progress as progress_bar
from recsys.schema import EVENTS, TABLES, TableSchema

REQUIRED_TABLES: tuple[str, ...] = ("users", "items", "events")
OPTIONAL_TABLES: tuple[str, ...] = ("kols", "posts", "follows", "friends")
SPLIT_DIR = "split"
TRUTH_DIR = "truth"
META_FILE = "world.json"


@dataclass
class World:
    root: Path
    users: pa.Table
    items: pa.Table
    kols: pa.Table
    posts: pa.Table
    follows: pa.Table
    friends: pa.Table
    events: pa.Table
    train_events: pa.Table | None = None
    """``split/train``: None when the directory has no split."""
    test_events: pa.Table | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """The parsed ``world.json`` ({} when absent)."""
    reports: dict[str, LoadReport] = field(default_factory=dict)
    """Load report per table name (``split/train``, ``split/test`` for the split)."""
    absent: tuple[str, ...] = ()
    """Optional tables that had no file and were loaded empty."""
    labels: IdLabels = field(default_factory=IdLabels)
    """Labels of the hashed (string) ids of every table, per id kind."""

    @property
    def truth_dir(self) -> Path | None:
        path = self.root / TRUTH_DIR
        return path if path.is_dir() else None

    @property
    def has_split(self) -> bool:
        return self.train_events is not None and self.test_events is not None


def _empty(schema: TableSchema) -> pa.Table:
    return schema.arrow_schema().empty_table()


def missing_required_table(root: Path, name: str) -> TableError:
    """The error of a world directory without one of REQUIRED_TABLES (both training engines)."""
    return TableError(
        root / f"{name}.parquet", f"required table {name!r} not found (tried {', '.join(SUFFIXES)})"
    )


def load_world(directory: str | Path, *, progress: bool = False) -> World:
    """Load and validate every table of a world directory; raises :class:`DataError` on bad input.

    ``progress`` shows a per-table progress bar on stderr (large worlds take seconds)."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected a world directory)")
    tables: dict[str, pa.Table] = {}
    reports: dict[str, LoadReport] = {}
    absent: list[str] = []
    labels = IdLabels()
    names = (*REQUIRED_TABLES, *OPTIONAL_TABLES)
    for name in progress_bar(names, desc="loading world", unit="table", enabled=progress):
        path = find_table_file(root, name)
        if path is None:
            if name in REQUIRED_TABLES:
                raise missing_required_table(root, name)
            absent.append(name)
            tables[name] = _empty(TABLES[name])
            continue
        result = load_table(path, TABLES[name])
        tables[name] = result.table
        reports[name] = result.report
        _merge_labels(labels, result.labels, path)

    split: dict[str, pa.Table | None] = {"train": None, "test": None}
    for part in split:
        path = find_table_file(root / SPLIT_DIR, part)
        if path is not None:
            result = load_table(path, EVENTS)
            split[part] = result.table
            reports[f"{SPLIT_DIR}/{part}"] = result.report
            _merge_labels(labels, result.labels, path)
    if (split["train"] is None) != (split["test"] is None):
        have = "train" if split["train"] is not None else "test"
        raise DataError(f"{root / SPLIT_DIR}: has {have} but not the other half of the split")

    meta: dict[str, Any] = {}
    meta_path = root / META_FILE
    if meta_path.is_file():
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{meta_path}: invalid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise DataError(f"{meta_path}: expected a JSON object at the top level")
        meta = loaded

    return World(
        root=root,
        users=tables["users"],
        items=tables["items"],
        kols=tables["kols"],
        posts=tables["posts"],
        follows=tables["follows"],
        friends=tables["friends"],
        events=tables["events"],
        train_events=split["train"],
        test_events=split["test"],
        meta=meta,
        reports=reports,
        absent=tuple(absent),
        labels=labels,
    )


def _merge_labels(into: IdLabels, labels: IdLabels, path: Path) -> None:
    """Add one table's labels; two distinct ids sharing a key across tables name the file."""
    try:
        into.update(labels)
    except IdError as exc:
        raise TableError(path, f"{exc} (an id of an earlier table)") from None

"""A world directory (recsys/io/world.py layout) and an event export, read by Spark.

Why not the local loader: at cluster scale the tables live on shared storage and never fit one
process. The rules are the local ones (required and optional tables, split halves, chronological
re-split of history + export at the same time quantile), so both engines see the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.io.errors import DataError, TableError
from recsys.io.tables import SUFFIXES
from recsys.io.world import OPTIONAL_TABLES, REQUIRED_TABLES, SPLIT_DIR
from recsys.schema import EVENTS, TABLES
from training.data import EXPORT_GLOB, event_export_files
from training.spark.tables import ROW, SparkTable, empty_table, find_table, read_table, spark_errors, validate

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class SparkWorld:
    tables: dict[str, SparkTable]
    """users, items, kols, posts, follows, friends (absent optional tables are empty)."""
    train: DataFrame
    test: DataFrame
    labels: list[DataFrame] = field(default_factory=list)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    """Dropped event rows per source and reason (lenient tables)."""


def read_world(
    spark: SparkSession, root: Path, events_path: Path | None = None, test_fraction: float = 0.2
) -> SparkWorld:
    """Read and validate a world directory, and the export under ``events_path`` when given."""
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected a world directory)")
    tables: dict[str, SparkTable] = {}
    for name in (*REQUIRED_TABLES, *OPTIONAL_TABLES):
        path = find_table(root, name)
        if path is None:
            if name in REQUIRED_TABLES:
                raise TableError(
                    root / f"{name}.parquet",
                    f"required table {name!r} not found (tried {', '.join(SUFFIXES)})",
                )
            tables[name] = empty_table(spark, TABLES[name])
            continue
        tables[name] = read_table(spark, path, TABLES[name])
    split: dict[str, SparkTable | None] = {}
    for part in ("train", "test"):
        path = find_table(root / SPLIT_DIR, part)
        split[part] = read_table(spark, path, EVENTS) if path is not None else None
    if (split["train"] is None) != (split["test"] is None):
        have = "train" if split["train"] is not None else "test"
        raise DataError(f"{root / SPLIT_DIR}: has {have} but not the other half of the split")
    history = tables.pop("events")
    labels = [lab for t in (*tables.values(), history) for lab in t.labels]
    skipped = {"events": history.skipped}
    if events_path is not None:
        exported = read_event_export(spark, events_path)
        labels += exported.labels
        skipped["events_path"] = exported.skipped
        train, test = split_by_time(history.df.unionByName(exported.df), test_fraction, events_path)
    elif split["train"] is not None and split["test"] is not None:
        train, test = split["train"].df, split["test"].df
        labels += split["train"].labels + split["test"].labels
        skipped["split/train"], skipped["split/test"] = split["train"].skipped, split["test"].skipped
    else:
        raise DataError(f"{root}: world has no split/{{train,test}} (needed to train and evaluate)")
    return SparkWorld(tables=tables, train=train, test=test, labels=labels, skipped=skipped)


def read_event_export(spark: SparkSession, directory: Path) -> SparkTable:
    """The ``date=YYYY-MM-DD/*.parquet`` files of ``kolfeed events export``, validated as events."""
    from pyspark.sql import functions as F

    files = event_export_files(directory)
    if not files:
        raise DataError(f"{directory}: no {EXPORT_GLOB} files (data.events_path)")
    with spark_errors(str(directory)):
        raw = spark.read.option("basePath", str(directory)).parquet(str(directory / "date=*"))
        missing = [c.name for c in EVENTS.columns if not c.nullable and c.name not in raw.columns]
        if missing:
            raise TableError(
                directory, f"missing required column(s) {', '.join(map(repr, missing))} in the event export"
            )
        raw = raw.withColumn(ROW, F.col("_metadata.row_index") + F.lit(1)).drop("date")
        return validate(raw, EVENTS, str(directory))


def split_by_time(events: DataFrame, test_fraction: float, where: Path) -> tuple[DataFrame, DataFrame]:
    """The local engine's split: cut at the exact (linearly interpolated) ``1 - test_fraction`` quantile
    of ``ts``, truncated to whole seconds; events at or after the cut are the test half."""
    from pyspark.sql import functions as F

    stats = events.agg(
        F.count(F.lit(1)).alias("n"), F.percentile(F.col("ts"), F.lit(1.0 - test_fraction)).alias("q")
    ).collect()[0]
    if int(stats["n"]) < 2:
        raise DataError(f"{where}: too few events to split ({int(stats['n'])})")
    cut = int(float(stats["q"]))
    return events.where(F.col("ts") < cut), events.where(F.col("ts") >= cut)

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
from recsys.io.report import LoadReport
from recsys.io.world import OPTIONAL_TABLES, REQUIRED_TABLES, SPLIT_DIR, missing_required_table
from recsys.schema import ACTION_NAMES, EVENTS, TABLES
from training.data import ITEM_NOT_IN_CATALOGUE
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
    new_users: DataFrame | None = None
    """(user_id) first seen in the event export: they join the user map (the local intake rule)."""
    intake: dict[str, int] = field(default_factory=dict)
    """The local engine's ``LogIntake.stats()`` of the event export (empty without one)."""
    reports: dict[str, LoadReport] = field(default_factory=dict)
    """Load report per table read (``split/train``, ``split/test``; ``event_export`` for the export:
    rows of its files, kept after its checks and the intake rule), as ``recsys.io.world.World``."""
    cached: list[DataFrame] = field(default_factory=list)
    """Persisted intermediate frames to release once the indexed events are cached."""

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()


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
                raise missing_required_table(root, name)
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
    reports = {name: t.report for name, t in (*tables.items(), ("events", history)) if t.report is not None}
    new_users = None
    intake: dict[str, int] = {}
    cached: list[DataFrame] = []
    if events_path is not None:
        exported, total = read_event_export(spark, events_path)
        labels += exported.labels
        skipped["events_path"] = exported.skipped
        kept, new_users, intake = take_in(exported.df, tables, total)
        cached += [exported.df, kept]
        unknown_item = {ITEM_NOT_IN_CATALOGUE: intake["log_skipped_unknown_item"]}
        reports["event_export"] = LoadReport(
            file=str(events_path),
            table="events",
            total_rows=total,
            kept_rows=intake["log_events_kept"],
            skipped={r: n for r, n in {**exported.skipped, **unknown_item}.items() if n},
        )
        train, test = split_by_time(history.df.unionByName(kept), test_fraction, events_path)
    elif split["train"] is not None and split["test"] is not None:
        train, test = split["train"].df, split["test"].df
        labels += split["train"].labels + split["test"].labels
        skipped["split/train"], skipped["split/test"] = split["train"].skipped, split["test"].skipped
        for part in ("train", "test"):
            report = split[part].report  # type: ignore[union-attr]
            if report is not None:
                reports[f"{SPLIT_DIR}/{part}"] = report
    else:
        raise DataError(f"{root}: world has no split/{{train,test}} (needed to train and evaluate)")
    return SparkWorld(
        tables=tables,
        train=train,
        test=test,
        labels=labels,
        skipped=skipped,
        new_users=new_users,
        intake=intake,
        reports=reports,
        cached=cached,
    )


def take_in(
    exported: DataFrame, tables: dict[str, SparkTable], total: int
) -> tuple[DataFrame, DataFrame, dict[str, int]]:
    """The local engine's rule for the service's events (``training.data.LogIntake``): events on items
    the catalogue lacks are skipped, a creator missing from the creators table is dropped from the
    event, and users first seen in them (as user or share recipient) join the user map.
    Returns the kept events, the new users and the intake counts."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    items = tables["items"].df.select(F.col("item_id").alias("__item"))
    kols = tables["kols"].df.select(F.col("kol_id").alias("__kol"), F.lit(True).alias("__known_kol"))
    kept = exported.join(items, exported["item_id"] == items["__item"], "left_semi")
    kept = kept.join(kols, kept["kol_id"] == kols["__kol"], "left")
    unknown_kol = F.col("kol_id").isNotNull() & F.col("__known_kol").isNull()
    kept = kept.withColumn("__drop_kol", unknown_kol)
    kept = kept.withColumn("kol_id", F.when(~F.col("__drop_kol"), F.col("kol_id"))).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    seen = kept.select(F.col("user_id")).unionByName(
        kept.where(F.col("to_user_id").isNotNull()).select(F.col("to_user_id").alias("user_id"))
    )
    new_users = seen.distinct().join(tables["users"].df.select("user_id"), "user_id", "left_anti")
    counts = kept.agg(
        F.count(F.lit(1)).alias("kept"), F.sum(F.col("__drop_kol").cast("int")).alias("kol")
    ).collect()[0]
    valid = int(exported.count())
    n_new = int(new_users.count())
    intake = {
        "log_events_read": total,
        "log_events_kept": int(counts["kept"]),
        "log_new_users": n_new,
        "log_skipped_unknown_item": valid - int(counts["kept"]),
        "log_unknown_kol_dropped": int(counts["kol"] or 0),
    }
    return kept.drop("__kol", "__known_kol", "__drop_kol"), new_users, intake


def read_event_export(spark: SparkSession, directory: Path) -> tuple[SparkTable, int]:
    """The ``date=YYYY-MM-DD/*.parquet`` files of ``kolfeed events export``, checked as
    ``features.event_export.read_export`` checks them (a missing ts/user/item/action/origin, an unknown
    action, then one of each repeated ``(replica, worker, seq)``; its reason names), then validated as
    events; and the number of rows the files hold.

    One pass counts the rows per reason; the de-duplicating shuffle runs once (its result is persisted
    while validation scans it)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from features.event_export import ExportError, export_files

    try:
        files = export_files(directory)
    except ExportError as exc:
        raise DataError(f"data.events_path: {exc}") from None
    if not files:
        raise DataError(f"{directory}: no date=YYYY-MM-DD/*.parquet files (data.events_path)")
    with spark_errors(str(directory)):
        raw = spark.read.option("basePath", str(directory)).parquet(str(directory / "date=*"))
        missing = [c.name for c in EVENTS.columns if not c.nullable and c.name not in raw.columns]
        if missing:
            raise TableError(
                directory, f"missing required column(s) {', '.join(map(repr, missing))} in the event export"
            )
        raw = raw.withColumn(ROW, F.col("_metadata.row_index") + F.lit(1)).drop("date")
        origin: list[str] = [c for c in ("replica", "worker", "seq") if c in raw.columns]
        reason = F.lit(None).cast("string")
        if "action" in raw.columns:
            reason = F.when(~F.col("action").isin(*ACTION_NAMES), F.lit("unknown action")).otherwise(reason)
        for name in reversed(("ts", "user_id", "item_id", "action", *origin)):
            if name in raw.columns:
                reason = F.when(F.col(name).isNull(), F.lit(f"missing {name}")).otherwise(reason)
        tagged = raw.withColumn("__skip", reason)
        counts = tagged.groupBy("__skip").count().collect()
        total = sum(int(r["count"]) for r in counts)
        skipped = {str(r["__skip"]): int(r["count"]) for r in counts if r["__skip"] is not None}
        clean = tagged.where(F.col("__skip").isNull()).drop("__skip")
        once = (clean.dropDuplicates(origin) if origin else clean).persist(StorageLevel.MEMORY_AND_DISK)
        table = validate(once, EVENTS, str(directory), examples=False)  # 3 passes over ``once``
        once.unpersist()  # validate's result is cached and counted: the shuffle ran once
        assert table.report is not None
        repeated = total - sum(skipped.values()) - table.report.total_rows
        if repeated:
            skipped["repeated (replica, worker, seq)"] = repeated
        table.skipped = {**skipped, **table.skipped}
        return table, total


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

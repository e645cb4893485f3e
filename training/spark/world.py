"""A world directory (recsys/io/world.py layout) and an event export, read by Spark.

Why not the local loader: at cluster scale the tables live on shared storage and never fit one
process. The rules are the local ones (required and optional tables, split halves, chronological
re-split of history + export at the same time quantile), so both engines see the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.graphs import DAY_SECONDS
from recsys.io.errors import DataError, TableError
from recsys.io.report import LoadReport
from recsys.io.world import OPTIONAL_TABLES, REQUIRED_TABLES, SPLIT_DIR, missing_required_table
from recsys.schema import ACTION_NAMES, EVENTS, TABLES
from training.data import ITEM_NOT_IN_CATALOGUE
from training.spark.tables import (
    ROW,
    SparkTable,
    empty_table,
    find_table,
    integer_id_columns,
    read_table,
    spark_errors,
    validate,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

GRAPH_COLUMNS = ("ts", "user_id", "item_id", "action", "post_id", "kol_id", "to_user_id")
"""The event columns the graphs read: the split halves carry only these (``request_id`` and ``value``
are validated but never cached: a third fewer bytes per cached event)."""


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
        assert exported.report is not None
        kept, new_users, intake = take_in(exported.df, tables, total, exported.report.kept_rows)
        cached += [exported.df, kept, *exported.cached]
        unknown_item = {ITEM_NOT_IN_CATALOGUE: intake["log_skipped_unknown_item"]}
        reports["event_export"] = LoadReport(
            file=str(events_path),
            table="events",
            total_rows=total,
            kept_rows=intake["log_events_kept"],
            skipped={r: n for r, n in {**exported.skipped, **unknown_item}.items() if n},
        )
        events = history.df.select(*GRAPH_COLUMNS).unionByName(kept.select(*GRAPH_COLUMNS))
        train, test = split_by_time(events, test_fraction, events_path)
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
    exported: DataFrame, tables: dict[str, SparkTable], total: int, valid: int
) -> tuple[DataFrame, DataFrame, dict[str, int]]:
    """The local engine's rule for the service's events (``training.data.LogIntake``): events on items
    the catalogue lacks are skipped, a creator missing from the creators table is dropped from the
    event, and users first seen in them (as user or share recipient) join the user map.
    ``valid``: the export's rows that passed validation (the rows of ``exported``).
    Returns the kept events (cached: :data:`GRAPH_COLUMNS` and ``__drop_kol``; the caller releases
    the cache), the new users and the intake counts."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    items = tables["items"].df.select(F.col("item_id").alias("__item"))
    kols = tables["kols"].df.select(F.col("kol_id").alias("__kol"), F.lit(True).alias("__known_kol"))
    kept = exported.join(items, exported["item_id"] == items["__item"], "left_semi")
    kept = kept.join(kols, kept["kol_id"] == kols["__kol"], "left")
    unknown_kol = F.col("kol_id").isNotNull() & F.col("__known_kol").isNull()
    kept = kept.withColumn("__drop_kol", unknown_kol)
    kept = kept.withColumn("kol_id", F.when(~F.col("__drop_kol"), F.col("kol_id")))
    kept = kept.select(*GRAPH_COLUMNS, "__drop_kol").persist(StorageLevel.MEMORY_AND_DISK)
    seen = kept.select(F.col("user_id")).unionByName(
        kept.where(F.col("to_user_id").isNotNull()).select(F.col("to_user_id").alias("user_id"))
    )
    new_users = seen.distinct().join(tables["users"].df.select("user_id"), "user_id", "left_anti")
    counts = kept.agg(
        F.count(F.lit(1)).alias("kept"), F.sum(F.col("__drop_kol").cast("int")).alias("kol")
    ).collect()[0]
    n_new = int(new_users.count())
    intake = {
        "log_events_read": total,
        "log_events_kept": int(counts["kept"]),
        "log_new_users": n_new,
        "log_skipped_unknown_item": valid - int(counts["kept"]),
        "log_unknown_kol_dropped": int(counts["kol"] or 0),
    }
    return kept, new_users, intake


def read_event_export(spark: SparkSession, directory: Path) -> tuple[SparkTable, int]:
    """The ``date=YYYY-MM-DD/*.parquet`` files of ``kolfeed events export``, checked as
    ``features.event_export.read_export`` checks them (a missing ts/user/item/action/origin, an unknown
    action, then one of each repeated ``(replica, worker, seq)``; its reason names), then validated as
    events; and the number of rows the files hold.

    One pass counts the rows per reason, the id columns' minimum (which validation needs) and the
    repeated origins (:func:`_origin_buckets`); only when there are repeats are they removed
    (:func:`_drop_repeated`). Validation counts in one more pass and its result stays lazy: the
    intake rule caches the narrower frame the graphs read."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

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
        ids = integer_id_columns(raw, EVENTS)  # their minimum decides how validation keys them
        by_seq = "seq" in origin and isinstance(raw.schema["seq"].dataType, T.IntegralType)
        buckets = _origin_buckets(tagged, origin, ids) if by_seq else None
        counts = buckets if buckets is not None else tagged.groupBy("__skip").agg(_count(), *_mins(ids))
        counts = counts.groupBy("__skip").agg(
            F.sum("count").alias("count"),
            *[F.min(f"__min_{n}").alias(f"__min_{n}") for n in ids],
            *([F.sum(F.col("count") - F.col("__distinct")).alias("__repeats")] if by_seq else []),
        )
        rows = counts.collect()
        total = sum(int(r["count"]) for r in rows)
        skipped = {str(r["__skip"]): int(r["count"]) for r in rows if r["__skip"] is not None}
        clean_rows = [r for r in rows if r["__skip"] is None]
        negative = {n for r in clean_rows for n in ids if r[f"__min_{n}"] is not None and r[f"__min_{n}"] < 0}
        clean = tagged.where(F.col("__skip").isNull()).drop("__skip")
        if buckets is not None:
            repeats = sum(int(r["__repeats"] or 0) for r in clean_rows)
            once = _drop_repeated(clean, origin, buckets) if repeats else clean
        else:
            once = (clean.dropDuplicates(origin) if origin else clean).persist(StorageLevel.MEMORY_AND_DISK)
        table = validate(once, EVENTS, str(directory), examples=False, negative=negative, persist=False)
        table.cached.append(once)  # cached only when there were repeats; read again by the intake
        assert table.report is not None
        repeated = total - sum(skipped.values()) - table.report.total_rows
        if repeated:
            skipped["repeated (replica, worker, seq)"] = repeated
        table.skipped = {**skipped, **table.skipped}
        return table, total


def _count() -> Column:
    from pyspark.sql import functions as F

    return F.count(F.lit(1)).alias("count")


def _mins(ids: list[str]) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.min(n).alias(f"__min_{n}") for n in ids]


def _origin_buckets(tagged: DataFrame, origin: list[str], ids: list[str]) -> DataFrame:
    """Per reason, writer (replica, worker) and bucket of 64 consecutive seqs (``seq >> 6``): the
    rows, the distinct seqs (bits of a 64-bit ``bit_or`` of ``1 << (seq & 63)``) and the id
    columns' minimum.

    Why: ``dropDuplicates`` on the export shuffles every column of every event (66 s of a 10M-event
    run) while repeats are rare (files copied by hand). This is one hash aggregation of plain
    longs; ``seq`` is each writer's counter, so the map side folds 64 events into one row: a bucket
    whose distinct seqs are fewer than its rows holds the repeats, and only such buckets are
    de-duplicated. Exact: a repeated origin shares its writer, bucket and bit."""
    from pyspark.sql import functions as F

    writer = [c for c in origin if c != "seq"]
    bit = F.expr("shiftleft(1L, int(bigint(seq) & 63))")
    return tagged.groupBy("__skip", *writer, _bucket().alias("__bucket")).agg(
        _count(),
        F.bit_count(F.bit_or(bit)).cast("long").alias("__distinct"),
        *_mins(ids),
    )


def _bucket() -> Column:
    from pyspark.sql import functions as F

    return F.shiftright(F.col("seq").cast("long"), 6)


def _drop_repeated(clean: DataFrame, origin: list[str], buckets: DataFrame) -> DataFrame:
    """``clean`` with one row of each repeated ``origin``: only the rows in buckets holding repeats
    (:func:`_origin_buckets`) go through ``dropDuplicates``. Cached (validation and the intake read it)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    keys = [c for c in origin if c != "seq"] + ["__bucket"]
    repeated = buckets.where(F.col("__skip").isNull() & (F.col("count") > F.col("__distinct"))).select(*keys)
    repeated = F.broadcast(repeated.persist(StorageLevel.MEMORY_AND_DISK))
    bucketed = clean.withColumn("__bucket", _bucket())
    suspects = bucketed.join(repeated, keys, "left_semi").dropDuplicates(origin)
    rest = bucketed.join(repeated, keys, "left_anti")
    once = rest.unionByName(suspects).drop("__bucket").persist(StorageLevel.MEMORY_AND_DISK)
    once.count()
    return once


def split_by_time(events: DataFrame, test_fraction: float, where: Path) -> tuple[DataFrame, DataFrame]:
    """The local engine's split: cut at ``np.quantile(ts, 1 - test_fraction)`` (linear interpolation),
    truncated to whole seconds; events at or after the cut are the test half.

    Why not Spark's ``percentile``: it keeps a hash map of boxed values per task (14 s of a 10M-event
    run). The quantile needs only the ``ts`` values at two ranks: events are counted per day, then per
    second within the one or two days holding those ranks (two small aggregations)."""
    from pyspark.sql import functions as F

    q = 1.0 - test_fraction
    days = events.groupBy(F.floor(F.col("ts") / F.lit(DAY_SECONDS)).alias("day")).count().toArrow()
    day = np.asarray(days.column("day").to_numpy(), dtype=np.int64)
    per_day = np.asarray(days.column("count").to_numpy(), dtype=np.int64)
    n = int(per_day.sum())
    if n < 2:
        raise DataError(f"{where}: too few events to split ({n})")
    virtual = quantile_index(n, q)
    ranks = (int(np.floor(virtual)), min(int(np.floor(virtual)) + 1, n - 1))
    order = np.argsort(day)
    day = day[order]
    before = np.concatenate([[0], np.cumsum(per_day[order])])  # events before each day
    wanted = sorted({int(day[np.searchsorted(before, r, side="right") - 1]) for r in ranks})
    seconds = (
        events.where(F.floor(F.col("ts") / F.lit(DAY_SECONDS)).isin(*wanted)).groupBy("ts").count().toArrow()
    )
    ts = np.asarray(seconds.column("ts").to_numpy(), dtype=np.int64)
    counts = np.asarray(seconds.column("count").to_numpy(), dtype=np.int64)
    o = np.argsort(ts)
    ts, counts = ts[o], counts[o]
    first = int(before[np.searchsorted(day, wanted[0])])  # rank of the first event of the first wanted day
    ends = first + np.cumsum(counts)  # rank just past each second's events
    at = [int(ts[np.searchsorted(ends, r, side="right")]) for r in ranks]
    cut = int(lerp(float(at[0]), float(at[1]), virtual - np.floor(virtual)))
    return events.where(F.col("ts") < cut), events.where(F.col("ts") >= cut)


def quantile_index(n: int, q: float) -> float:
    """numpy's virtual index of quantile ``q`` among ``n`` sorted values (method ``linear``)."""
    return float((n - 1) * q)


def lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation between the values at the two ranks (``np.quantile``, ``linear``)."""
    diff = np.float64(b) - np.float64(a)
    if t >= 0.5:
        return float(np.float64(b) - diff * (1.0 - np.float64(t)))
    return float(np.float64(a) + diff * np.float64(t))

"""World tables read and validated by Spark with the rules of the local loader (recsys.io.tables).

Why the same rules: a shop's file must be accepted or refused the same way whichever engine trains on
it. Strict tables (users, items, …) fail on their first bad row with the local loader's
:class:`~recsys.io.errors.TableError` (file, row, column, value, expected type); lenient tables (events)
drop bad rows and count them per reason. Nothing here raises a JVM stack trace: Spark's own failures
are turned into one-line :class:`~recsys.io.errors.DataError`.

Ids: every id column becomes the int64 key of recsys/ids.py. Canonical non-negative decimals are their
own key (pure Spark SQL); any other string is hashed once per distinct value by a Python UDF calling
:func:`recsys.ids.id_key`, so the keys are bit-for-bit those of the local engine. The labels of hashed
ids are kept (kind, key, label) for the run directory's ``labels.parquet``.

Row numbers: Parquet rows are numbered by Spark's ``_metadata.row_index`` (1-based, per file); CSV rows
by their line (the header is line 1), counted only on the error path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark import StorageLevel

from recsys.io.errors import DataError, TableError
from recsys.io.report import MAX_EXAMPLES, LoadReport
from recsys.io.tables import SUFFIXES, check_header, row_error, table_format
from recsys.schema import Column, TableSchema

if TYPE_CHECKING:
    from pyspark.sql import Column as SparkColumn
    from pyspark.sql import DataFrame, SparkSession

ROW = "__row"
"""Helper column: 1-based Parquet row number, or an ordinal of the CSV row (see :func:`_row_number`)."""
TEXT = "__text"


_CANONICAL = r"^(0|[1-9][0-9]{0,18})$"


@dataclass
class SparkTable:
    """A validated table: ``df`` has exactly the schema's columns and types (ids as keys)."""

    df: DataFrame
    labels: list[DataFrame] = field(default_factory=list)
    """(kind, key, label) of the hashed ids of each string id column."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Lenient tables: rows dropped per reason (``bad ts``, ``null user_id``, …)."""
    report: LoadReport | None = None
    """Rows read, kept and skipped (with example row numbers), as the local loader's report."""
    cached: list[DataFrame] = field(default_factory=list)
    """Cached frames ``df`` is computed from (to release once the events derived from it are cached)."""


@contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Spark/JVM failures while doing ``what`` as one-line DataErrors (our own errors pass through)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JJavaError) as exc:
        raise DataError(f"{what}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a Spark error, without the JVM stack."""
    text = str(getattr(exc, "java_exception", None) or exc)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "JVM stacktrace", "Traceback")):
            return line[:300]
    return exc.__class__.__name__


def read_table(spark: SparkSession, path: Path, schema: TableSchema) -> SparkTable:
    """Read one table file (Parquet, CSV or CSV.gz) and validate it against ``schema``."""
    fmt = table_format(path)
    if not path.is_file():
        raise TableError(path, "no such file")
    with spark_errors(str(path)):
        if fmt == "parquet":
            raw = spark.read.parquet(str(path))
            _, extra = check_header(path, schema, list(raw.columns))
            raw = raw.withColumn(ROW, _parquet_row())
        else:
            raw = spark.read.option("header", "true").option("mode", "PERMISSIVE").csv(str(path))
            _, extra = check_header(path, schema, list(raw.columns))
            from pyspark.sql import functions as F

            raw = raw.withColumn(ROW, F.monotonically_increasing_id())
        return validate(raw, schema, str(path), csv=fmt == "csv", extra=extra)


def find_table(directory: Path, name: str) -> Path | None:
    """``DIR/name.parquet`` (preferred), ``.csv`` or ``.csv.gz`` — the local loader's lookup."""
    for suffix in SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def empty_table(spark: SparkSession, schema: TableSchema) -> SparkTable:
    """An absent optional table: no rows, the schema's columns."""
    return SparkTable(df=spark.createDataFrame(schema.arrow_schema().empty_table().to_pylist(), _ddl(schema)))


def _parquet_row() -> SparkColumn:
    from pyspark.sql import functions as F

    return F.col("_metadata.row_index") + F.lit(1)


def _ddl(schema: TableSchema) -> str:
    names = {pa.int64(): "bigint", pa.float64(): "double", pa.bool_(): "boolean", pa.string(): "string"}
    return ", ".join(f"`{c.name}` {names[c.type]}" for c in schema.columns)


# ------------------------------------------------------------------------------------------ validation


def validate(
    raw: DataFrame,
    schema: TableSchema,
    where: str,
    csv: bool = False,
    extra: tuple[str, ...] = (),
    examples: bool = True,
    negative: set[str] | None = None,
    persist: bool = True,
) -> SparkTable:
    """Convert ``raw`` (which carries ``ROW``) to ``schema``; strict tables raise on the first bad row,
    lenient ones drop bad rows and count them (the first reason of a row, in schema order).

    Its :class:`LoadReport` has the rows read and kept, and per skip reason the count and, with
    ``examples``, the first row numbers (``extra``: the file's columns the schema does not know).
    ``negative``: the integer id columns holding a negative value, when the caller already knows
    them (else one aggregation finds them). Lenient tables are counted by one aggregation per reason
    (kept rows are the rows without one); strict tables are counted after the check. With
    ``persist`` the result is cached (filled by the first stage that reads it); a caller that reads
    it once (the event export: the intake rule caches its own narrower result) passes False."""
    from pyspark.sql import functions as F

    converted: dict[str, SparkColumn] = {}
    problems: list[tuple[str, SparkColumn, Column]] = []
    labels: list[DataFrame] = []
    df = raw
    if negative is None:
        negative = _negative_integer_ids(raw, schema)
    for col in schema.columns:
        if col.name not in raw.columns:  # absent nullable column (the header check allows only those)
            converted[col.name] = F.lit(None).cast(_spark_type(col))
            continue
        if col.id_kind is not None:
            df, value, bad, lab = _id_column(df, col, csv, col.name in negative)
            if lab is not None:
                labels.append(lab)
        else:
            value, bad = _typed_column(df, col)
        converted[col.name] = value
        problems.append((f"bad {col.name}", bad, col))
        if not col.nullable:
            problems.append((f"null {col.name}", F.col(col.name).isNull(), col))
    reason = F.lit(None).cast("string")
    for name, cond, _ in reversed(problems):
        reason = F.when(cond, F.lit(name)).otherwise(reason)
    checked = df.select(
        F.col(ROW), reason.alias("__reason"), *[v.alias(f"__v_{k}") for k, v in converted.items()], *_raw(df)
    )
    skipped: dict[str, int] = {}
    shown: dict[str, list[int]] = {}
    if not schema.lenient:
        _raise_first(checked, problems, where, csv)
        out = checked
    else:
        counts = checked.groupBy("__reason").count().collect()
        skipped = {str(r["__reason"]): int(r["count"]) for r in counts if r["__reason"] is not None}
        kept = sum(int(r["count"]) for r in counts if r["__reason"] is None)
        out = checked.where(F.col("__reason").isNull()) if skipped else checked
        if examples:
            shown = {reason: _example_rows(checked, reason, csv) for reason in skipped}
    final = out.select(*[F.col(f"__v_{c.name}").alias(c.name) for c in schema.columns])
    if persist:
        final = final.persist(StorageLevel.MEMORY_AND_DISK)
    if not schema.lenient:
        kept = int(final.count())
    report = LoadReport(
        file=where,
        table=schema.name,
        total_rows=kept + sum(skipped.values()),
        kept_rows=kept,
        skipped=skipped,
        examples=shown,
        extra_columns=extra,
        absent_columns=tuple(c.name for c in schema.columns if c.name not in raw.columns),
    )
    return SparkTable(df=final, labels=labels, skipped=skipped, report=report)


def _example_rows(checked: DataFrame, reason: str, csv: bool) -> list[int]:
    """The first :data:`MAX_EXAMPLES` row numbers skipped for ``reason`` (CSV: line numbers)."""
    from pyspark.sql import functions as F

    rows = checked.where(F.col("__reason") == reason).select(ROW).orderBy(ROW).limit(MAX_EXAMPLES).collect()
    numbers = [int(r[ROW]) for r in rows]
    return [_row_number(checked, n) for n in numbers] if csv else numbers


def integer_id_columns(raw: DataFrame, schema: TableSchema) -> list[str]:
    """The id columns of ``schema`` that ``raw`` holds as integers."""
    from pyspark.sql import types as T

    return [
        c.name
        for c in schema.columns
        if c.id_kind is not None
        and c.name in raw.columns
        and isinstance(raw.schema[c.name].dataType, T.IntegralType)
    ]


def _negative_integer_ids(raw: DataFrame, schema: TableSchema) -> set[str]:
    """Integer id columns holding a negative value (hashed as decimal strings, like the local rule);
    the others are their own keys and skip the hashing join. One aggregation pass."""
    from pyspark.sql import functions as F

    names = integer_id_columns(raw, schema)
    if not names:
        return set()
    row = raw.agg(*[F.min(n).alias(n) for n in names]).collect()[0]
    return {n for n in names if row[n] is not None and row[n] < 0}


def _raw(df: DataFrame) -> list[SparkColumn]:
    from pyspark.sql import functions as F

    return [F.col(c) for c in df.columns if c != ROW and not c.startswith("__")]


def _raise_first(checked: DataFrame, problems: list[tuple[str, Any, Column]], where: str, csv: bool) -> None:
    from pyspark.sql import functions as F

    first = checked.where(F.col("__reason").isNotNull()).orderBy(ROW).limit(1).collect()
    if not first:
        return
    row = first[0]
    reason = str(row["__reason"])
    col = next(c for name, _, c in problems if name == reason)
    number = _row_number(checked, int(row[ROW])) if csv else int(row[ROW])
    if reason.startswith("null "):
        raise row_error(where, col, number)
    raise row_error(where, col, number, row[col.name], empty=False)


def _row_number(checked: DataFrame, ordinal: int) -> int:
    """CSV: the line of the row whose monotonically increasing ordinal is ``ordinal`` (rows before it,
    plus the header line, plus one). Assumes one line per row, as the files kolfeed reads have."""
    from pyspark.sql import functions as F

    return int(checked.where(F.col(ROW) < ordinal).count()) + 2


def _spark_type(col: Column) -> str:
    if pa.types.is_integer(col.type):
        return "bigint"
    if pa.types.is_floating(col.type):
        return "double"
    if pa.types.is_boolean(col.type):
        return "boolean"
    return "string"


def _typed_column(df: DataFrame, col: Column) -> tuple[SparkColumn, SparkColumn]:
    """(value of ``col.type`` or null when bad, bad mask) — the local loader's conversions."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    raw = F.col(col.name)
    dtype = df.schema[col.name].dataType
    target = _spark_type(col)
    if isinstance(dtype, T.StringType):
        text = F.trim(raw)
        if target == "boolean":
            low = F.lower(text)
            value = F.when(low.isin("true", "1"), F.lit(True)).when(low.isin("false", "0"), F.lit(False))
        elif target == "string":
            value = raw
        else:
            value = text.try_cast(target)
    elif isinstance(dtype, T.TimestampType | T.TimestampNTZType) and target == "bigint":
        value = F.unix_timestamp(raw)
    elif target == "string":
        value = raw.cast("string")
    else:
        value = raw.try_cast(target)
    bad = raw.isNotNull() & value.isNull()
    if target == "double":
        bad = bad | (value.isNotNull() & (F.isnan(value) | (F.abs(value) == F.lit(float("inf")))))
    if col.allowed is not None:
        bad = bad | (value.isNotNull() & ~value.isin(*col.allowed))
    return F.when(~bad, value), bad


def _id_column(
    df: DataFrame, col: Column, csv: bool, has_negative: bool
) -> tuple[DataFrame, SparkColumn, SparkColumn, DataFrame | None]:
    """Keys of an id column: canonical decimals in SQL, other strings through ``id_key`` once per
    distinct value (joined back). Returns the frame (with the join), value, bad mask and labels."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = df.schema[col.name].dataType
    raw = F.col(col.name)
    if isinstance(dtype, T.IntegralType) and not has_negative:
        return df, raw.cast("bigint"), F.lit(False), None
    if isinstance(dtype, T.IntegralType):
        text = raw.cast("string")
    elif isinstance(dtype, T.StringType):
        text = F.trim(raw)  # the local loader strips whitespace around string ids too
    else:  # floats, booleans, …: not ids (the local loader refuses them too)
        return df, F.lit(None).cast("bigint"), raw.isNotNull(), None
    canonical = text.rlike(_CANONICAL) & text.try_cast("bigint").isNotNull()
    direct = F.when(canonical, text.cast("bigint"))
    key_col, text_col = f"__key_{col.name}", f"__text_{col.name}"
    joined = df.withColumn(text_col, text)
    hashed = (
        joined.select(F.col(text_col))
        .where(
            F.col(text_col).isNotNull()
            & ~(F.col(text_col).rlike(_CANONICAL) & F.col(text_col).try_cast("bigint").isNotNull())
        )
        .distinct()
    )
    hashed = hashed.withColumn(key_col, _hash_udf()(F.col(text_col)))
    joined = joined.join(hashed, on=text_col, how="left")
    value = F.coalesce(direct, F.col(key_col))
    bad = F.col(text_col).isNotNull() & value.isNull()
    kind = col.id_kind
    labels = None
    if kind is not None:
        labels = hashed.where(F.col(key_col).isNotNull()).select(
            F.lit(kind).alias("kind"), F.col(key_col).alias("key"), F.col(text_col).alias("label")
        )
    return joined, value, bad, labels


def _hash_udf() -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    def key(text):  # (no hints: Spark would read them as a pandas UDF)
        from recsys.ids import IdError, id_key

        if text is None:
            return None
        try:
            return id_key(text)
        except IdError:
            return None

    return F.udf(key, T.LongType())

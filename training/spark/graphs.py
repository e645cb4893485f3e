"""Every graph of a training run built with Spark SQL, with the local engine's weights and half-lives.

Why aggregated edges: the events (billions at scale) stay in Spark; what leaves it is one row per
(user, item), (user, KOL), (KOL, category) or post pair, the size of the matrices the run directory
holds. The formulas are those of recsys/graphs.py, recsys/affinity.py and training/data.py (weights per
action code, ``0.5 ** (age / half-life)`` with the newest training event as "now", hides subtract,
non-positive confidences dropped); tests check both engines give the same matrices on a tiny world.

Dense indices are the positions of the sorted keys, as ``np.unique`` gives them locally, so a run
trained with Spark can be re-evaluated and served with the local code unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys import graphs as g
from recsys.affinity import friend_buys_via_kol
from recsys.graphs import UnknownIdError
from recsys.id_labels import IdLabels
from recsys.ids import IdError
from recsys.interactions import Interactions
from recsys.schema import ACTION_CODE, ACTION_NAMES, CATEGORIES, TABLES
from training.config import TrainConfig
from training.data import Prepared, WorldGraphs
from training.spark.world import SparkWorld

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

DAY_SECONDS = g.DAY_SECONDS


@dataclass
class SparkPrepared:
    """What a Spark run hands on: the driver-side ``Prepared`` (the local exporter's input) and the
    training confidences still in Spark (MLlib ALS fits from them)."""

    prepared: Prepared
    confidences: DataFrame
    """(u int, i int, c double): dense user and item index, positive confidence."""


def dense_index(spark: SparkSession, frame: DataFrame, column: str) -> tuple[DataFrame, np.ndarray]:
    """(key, idx) for the distinct keys of ``column``, idx = rank of the key; and the sorted keys.

    Distributed: range-partitioned and sorted, numbered within each partition, then shifted by the
    sizes of the partitions before it (a handful of counts reach the driver, never the keys' order)."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = frame.select(F.col(column).alias("key")).where(F.col("key").isNotNull()).distinct()
    ranged = keys.repartitionByRange("key").withColumn("p", F.spark_partition_id())
    ranged = ranged.withColumn("r", F.row_number().over(Window.partitionBy("p").orderBy("key")) - 1)
    ranged = ranged.persist(StorageLevel.MEMORY_AND_DISK)
    sizes = sorted((int(r["p"]), int(r["count"])) for r in ranged.groupBy("p").count().collect())
    starts, total = [], 0
    for p, n in sizes:
        starts.append((p, total))
        total += n
    offsets = spark.createDataFrame(starts or [(0, 0)], "p int, start bigint")
    index = ranged.join(F.broadcast(offsets), "p").select("key", (F.col("start") + F.col("r")).alias("idx"))
    index = index.persist(StorageLevel.MEMORY_AND_DISK)
    ordered = index.orderBy("idx").select("key").toArrow()
    sorted_keys = np.asarray(ordered.column("key").to_numpy(), dtype=np.int64)
    ranged.unpersist()
    return index, sorted_keys


def _lookup(index: DataFrame, key: str, idx: str) -> DataFrame:
    return index.withColumnRenamed("key", key).withColumnRenamed("idx", idx)


def _weight(code: Column, vec: np.ndarray) -> Column:
    from pyspark.sql import functions as F

    return F.element_at(F.array(*[F.lit(float(w)) for w in vec]), code.cast("int") + 1)


def _decay(now: float, half_life_days: float | None) -> Column:
    from pyspark.sql import functions as F

    if half_life_days is None:
        return F.lit(1.0)
    age = F.greatest(F.lit(float(now)) - F.col("ts").cast("double"), F.lit(0.0))
    return F.pow(F.lit(0.5), age / F.lit(half_life_days * DAY_SECONDS))


def _check_known(frame: DataFrame, checks: list[tuple[Column, str, str, str, int]]) -> None:
    """The local engine's GraphError for an id the id maps do not know (``recsys.graphs.index_of``).

    ``checks`` are (rows to check, key column, index column, name in the message, map size), all
    answered by one aggregation; the first failing check in list order is raised."""
    from pyspark.sql import functions as F

    firsts = [
        F.first(F.when(where & F.col(key).isNotNull() & F.col(idx).isNull(), F.col(key)), ignorenulls=True)
        for where, key, idx, _, _ in checks
    ]
    row = frame.agg(*[f.alias(f"c{n}") for n, f in enumerate(firsts)]).collect()[0]
    for n, (_, _, _, what, known) in enumerate(checks):
        if row[f"c{n}"] is not None:
            raise UnknownIdError(what, int(row[f"c{n}"]), known)


class _Edges:
    """Aggregated edge frames that reach the driver together: one Spark job over their tagged union
    instead of one job (and one round trip) per matrix.

    Every frame holds one row per (row, col) pair (aggregated or distinct), so each edge arrives as
    the matrix's final float32 value with int32 indices: 13 bytes per edge in the driver instead of 25
    (int64 indices, float64 values), and no sorted copy of all edges (100M events: ~80M edges)."""

    def __init__(self) -> None:
        self.frames: list[DataFrame] = []
        self.shapes: dict[str, tuple[int, int]] = {}

    def add(
        self, name: str, frame: DataFrame, row: str, col: str, value: str, shape: tuple[int, int]
    ) -> None:
        from pyspark.sql import functions as F

        tag = len(self.shapes)  # a small int per matrix: string tags cost a Python str per edge
        self.shapes[name] = shape
        self.frames.append(
            frame.select(
                F.lit(tag).cast("tinyint").alias("g"),
                F.col(row).cast("int").alias("r"),
                F.col(col).cast("int").alias("c"),
                F.col(value).cast("float").alias("v"),
            )
        )

    def add_ones(
        self, name: str, frame: DataFrame, row: str, col: str, shape: tuple[int, int], distinct: bool = True
    ) -> None:
        """A binary matrix of the distinct (row, col) pairs; ``distinct=False`` when ``frame`` already
        holds each pair once (an aggregation's result), which spares a shuffle."""
        from pyspark.sql import functions as F

        pairs = frame.select(row, col)
        pairs = pairs.distinct() if distinct else pairs
        self.add(name, pairs.withColumn("one", F.lit(1.0)), row, col, "one", shape)

    def collect(self) -> dict[str, sp.csr_matrix]:
        """Float32 CSRs by name (one value per pair: each frame is aggregated or distinct)."""
        union = self.frames[0]
        for f in self.frames[1:]:
            union = union.unionByName(f)
        table = union.toArrow()
        tags = _column(table, "g", np.int8)
        rows, cols, vals = (
            _column(table, "r", np.int32),
            _column(table, "c", np.int32),
            _column(table, "v", np.float32),
        )
        del table
        out: dict[str, sp.csr_matrix] = {}
        for tag, (name, shape) in enumerate(self.shapes.items()):
            part = np.flatnonzero(tags == tag)
            m = sp.csr_matrix((vals[part], (rows[part], cols[part])), shape=shape, dtype=np.float32)
            m.sum_duplicates()
            out[name] = m
        return out


def _column(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    """One column as a contiguous numpy array (zero-copy when it has one chunk and no nulls)."""
    column = table.column(name)
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)


UNKNOWN_BITS = {"u": 1, "i": 2, "k": 4, "t": 8}
"""Bits of the compact events' ``miss`` column: the event names a user, item, KOL or share recipient
the id maps lack (its key is not null, its index is)."""


def _indexed_events(
    events: DataFrame, users: DataFrame, items: DataFrame, kols: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """(compact, full): events with their action code and dense user, item, KOL and share-recipient
    indices.

    ``compact`` is persisted and holds only what the graphs read — ``ts``, the action code ``a``
    (tinyint), the indices ``u``, ``i``, ``k``, ``t`` (int), ``post_id`` and the ``miss`` bitmask of
    :data:`UNKNOWN_BITS` — about a third of the cached bytes of the validated events with their string
    columns and key columns. ``full`` is the lazy join with the keys, read only to name an unknown id."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    codes = F.create_map(*[x for i, name in enumerate(ACTION_NAMES) for x in (F.lit(name), F.lit(i))])
    full = (
        events.withColumn("a", codes[F.col("action")].cast("tinyint"))
        .join(_lookup(users, "user_id", "u"), "user_id", "left")
        .join(_lookup(items, "item_id", "i"), "item_id", "left")
        .join(_lookup(kols, "kol_id", "k"), "kol_id", "left")
        .join(_lookup(users, "to_user_id", "t"), "to_user_id", "left")
    )
    miss = F.lit(0)
    for key, idx in (("user_id", "u"), ("item_id", "i"), ("kol_id", "k"), ("to_user_id", "t")):
        miss = miss + F.when(
            F.col(key).isNotNull() & F.col(idx).isNull(), F.lit(UNKNOWN_BITS[idx])
        ).otherwise(0)
    compact = full.select(
        "ts",
        "a",
        *[F.col(c).cast("int").alias(c) for c in ("u", "i", "k", "t")],
        "post_id",
        miss.cast("tinyint").alias("miss"),
    )
    return compact.persist(StorageLevel.MEMORY_AND_DISK), full


def _check_events(
    compact: DataFrame, full: DataFrame, checks: list[tuple[Column, str, str, str, int]]
) -> None:
    """:func:`_check_known` on the compact events: one aggregation over their ``miss`` bits, and only
    when one is set, the keys looked up again in ``full`` to name the first unknown id."""
    from pyspark.sql import functions as F

    flags = [
        F.max(F.when(where & (F.col("miss").bitwiseAND(F.lit(UNKNOWN_BITS[idx])) != 0), F.lit(1)))
        for where, _, idx, _, _ in checks
    ]
    row = compact.agg(*[f.alias(f"c{n}") for n, f in enumerate(flags)]).collect()[0]
    if any(row[f"c{n}"] is not None for n in range(len(checks))):
        _check_known(full, checks)


def build(spark: SparkSession, world: SparkWorld, cfg: TrainConfig) -> SparkPrepared:
    """All matrices and arrays of ``training.data.prepare_world``, computed in Spark."""
    from pyspark.sql import functions as F

    gc = cfg.graphs
    t = world.tables
    user_keys = t["users"].df.select("user_id")
    if world.new_users is not None:  # users first seen in the event export join the map (local rule)
        user_keys = user_keys.unionByName(world.new_users.select("user_id"))
    users, user_ids = dense_index(spark, user_keys, "user_id")
    items, item_ids = dense_index(spark, t["items"].df, "item_id")
    kols, kol_ids = dense_index(spark, t["kols"].df, "kol_id")
    n_u, n_i, n_k = len(user_ids), len(item_ids), len(kol_ids)

    train, train_full = _indexed_events(world.train, users, items, kols)
    test, test_full = _indexed_events(world.test, users, items, kols)
    w_all = g.action_weight_vector(gc.weights)
    used = F.col("a") != ACTION_CODE["impression"]
    shared = used & (F.col("a") == ACTION_CODE["share"])
    for frame, full, kol_check in ((train, train_full, True), (test, test_full, False)):
        checks = [
            (used, "user_id", "u", "user_id", n_u),
            (used, "item_id", "i", "item_id", n_i),
            (shared, "to_user_id", "t", "to_user_id", n_u),
        ]
        if kol_check:
            checks.append((_weight(F.col("a"), w_all) != 0, "kol_id", "k", "kol_id", n_k))
        _check_events(frame, full, checks)
    world.release()  # the indexed events are cached now: the export's intermediate copies can go

    now_row = train.agg(F.max("ts").alias("now"), F.count(F.lit(1)).alias("n")).collect()[0]
    now = float(now_row["now"]) if now_row["now"] is not None else 0.0
    n_train = int(now_row["n"])
    n_test = int(test.count())

    from pyspark import StorageLevel

    # One aggregation per (user, item) for the confidences, the seen pairs and the behaviour graphs
    # (one shuffle of the training events instead of five); each graph keeps its own rows: a row's
    # weight is 0 where it does not count, and counts are conditional.
    a = F.col("a")
    w_conf = _weight(a, g.action_weight_vector(gc.weights, gc.behaviours))
    positive = a.isin(*[int(c) for c in g.POSITIVE_CODES])
    behaviour_codes = {action: ACTION_CODE[action] for action in BEHAVIOUR_GRAPHS}
    pairs = (
        train.where((w_conf != 0) | positive | a.isin(*behaviour_codes.values()))
        .groupBy("u", "i")
        .agg(
            F.sum(w_conf * _decay(now, gc.half_life_days)).alias("c"),
            F.max(positive.cast("tinyint")).alias("seen"),
            *[
                F.sum((a == code).cast("int")).alias(f"n_{action}")
                for action, code in behaviour_codes.items()
            ],
        )
    ).persist(StorageLevel.MEMORY_AND_DISK)
    conf_df = pairs.where(F.col("c") > 0)
    edges = _Edges()
    edges.add("conf", conf_df, "u", "i", "c", (n_u, n_i))
    seen_df = pairs.where(F.col("seen") == 1).select("u", "i")
    edges.add_ones("seen", seen_df, "u", "i", (n_u, n_i), distinct=False)
    for action in BEHAVIOUR_GRAPHS:
        edges.add(
            f"behaviour/{action}", pairs.where(F.col(f"n_{action}") > 0), "u", "i", f"n_{action}", (n_u, n_i)
        )
    # held-out pairs: one anti-join with the seen pairs and one aggregation for every held-out set
    eval_codes = (
        {action: ACTION_CODE[action] for action in cfg.eval.behaviours} if cfg.eval.per_behaviour else {}
    )
    held = (
        test.where(positive | a.isin(*eval_codes.values()))
        .select("u", "i", "a")
        .join(seen_df, ["u", "i"], "left_anti")
        .groupBy("u", "i")
        .agg(
            F.max(positive.cast("tinyint")).alias("pos"),
            *[F.max((a == code).cast("tinyint")).alias(f"h_{action}") for action, code in eval_codes.items()],
        )
    ).persist(StorageLevel.MEMORY_AND_DISK)
    held_out = ["test"]
    edges.add_ones("test", held.where(F.col("pos") == 1), "u", "i", (n_u, n_i), distinct=False)
    for action in eval_codes:
        one = held.where(F.col(f"h_{action}") == 1)
        edges.add_ones(f"test/{action}", one, "u", "i", (n_u, n_i), distinct=False)
        held_out.append(f"test/{action}")
    social = _social_edges(world, cfg, train, users, kols, (n_u, n_i, n_k), now, edges)
    m = edges.collect()
    conf = m["conf"]
    test_m = m["test"]
    extra = {name.split("/", 1)[1]: m[name] for name in held_out[1:]}
    seen = m["seen"]
    inter = Interactions(train=conf, test=test_m, user_ids=user_ids, item_ids=item_ids, extra_test=extra)
    wg = _world_graphs(world, cfg, train, items, kols, kol_ids, (n_i, n_k), m, social)
    stats = {
        "n_users": n_u,
        "n_items": n_i,
        "n_kols": n_k,
        "n_train_events": n_train,
        "n_test_events": n_test,
        "train_nnz": int(conf.nnz),
        "test_nnz": int(test_m.nnz),
        **{f"test_{k}_nnz": int(v.nnz) for k, v in extra.items()},
        **world.intake,
    }
    prepared = Prepared(
        interactions=inter, seen=seen, world=wg, stats=stats, labels=collect_labels(world.labels)
    )
    confidences = conf_df.select(F.col("u").cast("int"), F.col("i").cast("int"), F.col("c"))
    train.unpersist()
    test.unpersist()
    held.unpersist()
    return SparkPrepared(prepared=prepared, confidences=confidences)


def _social_edges(
    world: SparkWorld,
    cfg: TrainConfig,
    train: DataFrame,
    users: DataFrame,
    kols: DataFrame,
    sizes: tuple[int, int, int],
    now: float,
    edges: _Edges,
) -> list[str]:
    """Add follows, friends, engagement, buys through KOLs and shares to ``edges`` (after checking
    their ids); returns the names of the behaviour graphs :func:`build` added."""
    from pyspark.sql import functions as F

    gc = cfg.graphs
    t = world.tables
    n_u, _, n_k = sizes
    weight = _weight(F.col("a"), g.action_weight_vector(gc.weights))
    yes = F.lit(True)

    follows_df = (
        t["follows"]
        .df.join(_lookup(users, "user_id", "u"), "user_id", "left")
        .join(_lookup(kols, "kol_id", "k"), "kol_id", "left")
    )
    _check_known(
        follows_df,
        [(yes, "user_id", "u", "follows.user_id", n_u), (yes, "kol_id", "k", "follows.kol_id", n_k)],
    )
    edges.add_ones("follows", follows_df, "u", "k", (n_u, n_k))
    friends_df = (
        t["friends"]
        .df.join(_lookup(users, "user_id", "a"), "user_id", "left")
        .join(_lookup(users, "friend_id", "b"), "friend_id", "left")
    )
    _check_known(
        friends_df,
        [(yes, "user_id", "a", "friends.user_id", n_u), (yes, "friend_id", "b", "friends.friend_id", n_u)],
    )
    pairs = friends_df.select("a", "b").unionByName(
        friends_df.select(F.col("b").alias("a"), F.col("a").alias("b"))
    )
    edges.add_ones("friends", pairs, "a", "b", (n_u, n_u))

    # engagement and buys through KOLs: one aggregation per (user, KOL)
    buy = F.col("a") == ACTION_CODE["buy"]
    per_kol = (
        train.where(F.col("k").isNotNull() & ((weight != 0) | buy))
        .groupBy("u", "k")
        .agg(
            F.sum(F.when(weight != 0, weight * _decay(now, gc.engagement_half_life_days))).alias("e"),
            F.sum(buy.cast("int")).alias("n"),
        )
    )
    edges.add("engagement", per_kol.where(F.col("e") != 0), "u", "k", "e", (n_u, n_k))
    edges.add("buys_via_kol", per_kol.where(F.col("n") > 0), "u", "k", "n", (n_u, n_k))
    shares = (
        train.where((F.col("a") == ACTION_CODE["share"]) & F.col("t").isNotNull())
        .groupBy("u", "t")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    edges.add("share", shares, "u", "t", "n", (n_u, n_u))
    return [f"behaviour/{a}" for a in BEHAVIOUR_GRAPHS]


BEHAVIOUR_GRAPHS = ("click", "share", "buy")


def _world_graphs(
    world: SparkWorld,
    cfg: TrainConfig,
    train: DataFrame,
    items: DataFrame,
    kols: DataFrame,
    kol_ids: np.ndarray,
    sizes: tuple[int, int],
    m: dict[str, sp.csr_matrix],
    behaviour_names: list[str],
) -> WorldGraphs:
    """The WorldGraphs of ``training.data.prepare_world`` from the collected edges, KOL fit and posts."""
    from pyspark.sql import functions as F

    t = world.tables
    weight = _weight(F.col("a"), g.action_weight_vector(cfg.graphs.weights))
    categories, kol_fit = _kol_fit(
        world,
        train.where((weight > 0) & F.col("k").isNotNull()),
        items,
        kol_ids,
        cfg.graphs.fit_smoothing,
        weight,
    )  # conversions through a KOL's post only, as recsys.graphs.kol_category_fit
    post_kol, post_item, post_engagement, posts_table = _posts(world, train, items, kols, sizes, weight)
    return WorldGraphs(
        kol_ids=kol_ids,
        follows=m["follows"],
        engagement=m["engagement"],
        friends=m["friends"],
        friend_buys=friend_buys_via_kol(m["friends"], m["buys_via_kol"]),
        share=m["share"],
        behaviours={name.split("/", 1)[1]: m[name] for name in behaviour_names},
        categories=categories,
        kol_fit=kol_fit,
        post_kol=post_kol,
        post_item=post_item,
        post_engagement=post_engagement,
        tables={
            "items": _arrow(t["items"].df, "items"),
            "kols": _arrow(t["kols"].df, "kols"),
            "posts": posts_table,
            "follows": _arrow(t["follows"].df, "follows"),
            "friends": _arrow(t["friends"].df, "friends"),
        },
    )


def _kol_fit(
    world: SparkWorld,
    converting: DataFrame,
    items: DataFrame,
    kol_ids: np.ndarray,
    smoothing: float,
    weight: Column,
) -> tuple[list[str], np.ndarray]:
    """Categories (the fixed list, then the items' other categories sorted) and the smoothed fit."""
    from pyspark.sql import functions as F

    item_cat = (
        world.tables["items"]
        .df.select("item_id", "category")
        .join(_lookup(items, "item_id", "i2"), "item_id")
    )
    seen_cats = {str(r[0]) for r in world.tables["items"].df.select("category").distinct().collect()}
    categories = list(CATEGORIES) + sorted(seen_cats - set(CATEGORIES))
    cat_index = {c: i for i, c in enumerate(categories)}
    sums = (
        converting.join(item_cat.select(F.col("i2").alias("i"), "category"), "i", "left")
        .groupBy("k", "category")
        .agg(F.sum(weight).alias("w"))
        .collect()
    )
    counts = np.zeros((len(kol_ids), len(categories)), dtype=np.float64)
    for r in sums:
        counts[int(r["k"]), cat_index[str(r["category"])]] += float(r["w"])
    return categories, g.smoothed_fit(counts, smoothing)


def _posts(
    world: SparkWorld,
    train: DataFrame,
    items: DataFrame,
    kols: DataFrame,
    sizes: tuple[int, int],
    weight: Column,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Table]:
    """Posts in post-id order: dense KOL and item index, positive weighted engagement, the table."""
    from pyspark.sql import functions as F

    posts = world.tables["posts"].df
    n_i, n_k = sizes
    indexed = posts.join(_lookup(kols, "kol_id", "k"), "kol_id", "left").join(
        _lookup(items, "item_id", "i"), "item_id", "left"
    )
    yes = F.lit(True)
    _check_known(
        indexed, [(yes, "kol_id", "k", "posts.kol_id", n_k), (yes, "item_id", "i", "posts.item_id", n_i)]
    )
    engaged = (
        train.where((weight > 0) & F.col("post_id").isNotNull())
        .groupBy("post_id")
        .agg(F.sum(weight).alias("pe"))
    )
    table = indexed.join(engaged, "post_id", "left").orderBy("post_id").toArrow()
    post_kol = np.asarray(table.column("k").to_numpy(), dtype=np.int64)
    post_item = np.asarray(table.column("i").to_numpy(), dtype=np.int64)
    engagement = np.asarray(table.column("pe").fill_null(0.0).to_numpy(), dtype=np.float64)
    return post_kol, post_item, engagement, _schema_cast(table, "posts")


def _arrow(frame: DataFrame, name: str) -> pa.Table:
    return _schema_cast(frame.toArrow(), name)


def _schema_cast(table: pa.Table, name: str) -> pa.Table:
    schema = TABLES[name].arrow_schema()
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def collect_labels(frames: Sequence[DataFrame]) -> IdLabels:
    """The labels of the hashed ids, per kind; two labels with one key are an IdError."""
    from pyspark.sql import functions as F

    if not frames:
        return IdLabels()
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f)
    distinct = union.distinct()
    clash = (
        distinct.groupBy("kind", "key")
        .agg(F.count(F.lit(1)).alias("n"), F.min("label").alias("a"), F.max("label").alias("b"))
        .where(F.col("n") > 1)
        .limit(1)
        .collect()
    )
    if clash:
        r = clash[0]
        raise IdError(f"{r['kind']}: ids {r['a']!r} and {r['b']!r} hash to the same key; rename one")
    table = distinct.orderBy("kind", "key").toArrow()
    out = IdLabels()
    kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)
    keys = np.asarray(table.column("key").to_numpy(), dtype=np.int64)
    labels = np.asarray(table.column("label").to_pylist(), dtype=np.str_)
    for kind in sorted(set(kinds.tolist())):
        mask = kinds == kind
        out.add(str(kind), keys[mask], labels[mask])
    return out

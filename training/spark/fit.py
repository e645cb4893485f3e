"""Fit a model on the Spark engine: MLlib ALS (implicit feedback) or popularity as a Spark SQL count.

Why the local model classes come back out: the run directory's ``model/`` must load with
``recsys.models.registry.load_model`` for ``kolfeed eval`` and serving, so the MLlib factors are put
into a ``recsys.models.als.ALS`` (exact dot-product scores of the exported embeddings, as locally).

Parameters map one to one: ``factors`` → rank, ``regularization`` → regParam, ``alpha`` → alpha,
``iterations`` → maxIter, ``random_state`` → seed. MLlib scales regParam by each user's and item's
number of ratings (ALS-WR) where ``implicit`` does not; docs/SCALING.md reports the measured effect.
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.models.adaptive import DataShape, adaptive_factors
from recsys.models.als import ALS, ALSParams
from recsys.models.popularity import Popularity
from training.spark.tables import spark_errors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def fit(spark: SparkSession, model: Any, confidences: DataFrame, shape: DataShape) -> None:
    """Fill ``model`` (an unfitted ALS or Popularity) from the (u, i, c) confidences in Spark;
    ``shape`` is the confidence matrix's (users, items, non-zeros)."""
    with spark_errors("spark fit"):
        if isinstance(model, ALS):
            _fit_als(spark, model, confidences, shape)
        elif isinstance(model, Popularity):
            _fit_popularity(model, confidences, shape.n_users, shape.n_items)
        else:  # the config validator refuses these first; this guards direct callers
            raise TypeError(f"no Spark implementation of {type(model).__name__}")


def _fit_als(spark: SparkSession, model: ALS, confidences: DataFrame, shape: DataShape) -> None:
    from pyspark.ml.recommendation import ALS as SparkALS

    p = model.params
    assert isinstance(p, ALSParams)
    rank = p.factors or adaptive_factors(model.name, shape)  # data-adaptive when unset, as locally
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kolfeed-als-checkpoints-") as checkpoints:
        # long lineages of many iterations are cut every checkpointInterval iterations (local runs)
        if spark.sparkContext.getCheckpointDir() is None:
            spark.sparkContext.setCheckpointDir(checkpoints)
        estimator = SparkALS(
            rank=rank,
            regParam=p.regularization,
            alpha=p.alpha,
            maxIter=p.iterations,
            implicitPrefs=True,
            seed=p.random_state,
            userCol="u",
            itemCol="i",
            ratingCol="c",
            coldStartStrategy="nan",
        )
        fitted = estimator.fit(confidences)
        model.user_factors = _factors(fitted.userFactors, shape.n_users, rank)
        model.item_factors = _factors(fitted.itemFactors, shape.n_items, rank)
    model.fit_seconds = time.perf_counter() - start


def _factors(frame: DataFrame, n: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) rows as a dense float32 matrix; ids without a row (no training data)
    stay zero, as the local ALS leaves them."""
    table = frame.toArrow()
    out = np.zeros((n, rank), dtype=np.float32)
    if table.num_rows == 0:
        return out
    ids = np.asarray(table.column("id").to_numpy(), dtype=np.int64)
    values = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    out[ids] = np.asarray(values, dtype=np.float32).reshape(len(ids), rank)
    return out


def _fit_popularity(model: Popularity, confidences: DataFrame, n_users: int, n_items: int) -> None:
    from pyspark.sql import functions as F

    value = F.col("c") if model.params.weighted else F.lit(1.0)
    table = confidences.groupBy("i").agg(F.sum(value).alias("n")).toArrow()
    counts = np.zeros(n_items, dtype=np.float32)
    counts[np.asarray(table.column("i").to_numpy(), dtype=np.int64)] = np.asarray(
        table.column("n").to_numpy(), dtype=np.float32
    )
    model.counts = counts
    model.n_users = n_users

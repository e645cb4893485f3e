"""The SparkSession (local[2]) of the Spark engine's test modules. Starting a JVM costs seconds, and
``getOrCreate`` hands every module the same session; each module registers it as its ``spark``
fixture with ``spark = pytest.fixture(scope="session", name="spark")(local_spark)``.

Why a 1 GB heap: the worlds here are tiny, and the engine's 4 GB default for local masters let each test
JVM grow to ~5 GB, which starved parallel runs on one machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from training.config import EngineConfig


def local_spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from training.spark.session import spark_session

    session = spark_session(EngineConfig(name="spark", master="local[2]", conf={"spark.driver.memory": "1g"}))
    yield session
    session.stop()

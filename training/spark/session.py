"""One SparkSession per process, built from the ``engine`` section of a train config.

Why getOrCreate: under ``spark-submit`` the driver already has a session configured by the command
line (master, executors, memory); a config that names no master uses that one. Locally (``kolfeed
train``) the master defaults to ``local[2]``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from training.config import EngineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
DEFAULTS: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    # small local runs: a handful of shuffle partitions instead of 200 near-empty ones
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.adaptive.enabled": "true",
}


LOCAL_DRIVER_MEMORY = "4g"
"""``local[N]`` runs the executors inside the driver JVM: Spark's 1 GB default heap fails at ~10M events
(``kolfeed bench scale --engine spark``), so local masters default to 4 GB (``engine.conf`` overrides)."""


def spark_session(engine: EngineConfig, app_name: str = "kolfeed-train") -> SparkSession:
    """The active session, or a new one from ``engine`` (master, then ``engine.conf`` over DEFAULTS)."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", _python())
    # py4j logs "Closing down clientserver connection" at INFO from a __del__ at interpreter exit,
    # after stderr may be closed: a "--- Logging error ---" traceback after every Spark run
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder.appName(app_name)
    submitted = SparkConf().contains("spark.master")  # spark-submit --master ... set it
    if engine.master is not None:
        builder = builder.master(engine.master)
    elif not submitted:
        builder = builder.master(DEFAULT_MASTER)
    defaults = dict(DEFAULTS)
    master = engine.master if engine.master is not None else (None if submitted else DEFAULT_MASTER)
    if master is not None and master.startswith("local"):
        defaults["spark.driver.memory"] = LOCAL_DRIVER_MEMORY
    for key, value in {**defaults, **{k: _conf_value(v) for k, v in engine.conf.items()}}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _conf_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _python() -> str:
    import sys

    return sys.executable

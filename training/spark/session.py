"""One SparkSession per process, built from the ``engine`` section of a train config.

Why getOrCreate: under ``spark-submit`` the driver already has a session configured by the command
line (master, executors, memory); a config that names no master uses that one. Locally (``kolfeed
train``) the master defaults to ``local[2]``.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import TYPE_CHECKING

from training.config import EngineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
DEFAULTS: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    # the graphs' union of ~15 aggregated frames over the validated export has a plan whose text
    # (built for every query for the UI) reached megabytes and a 1 GB test heap ran out building it
    "spark.sql.maxPlanStringLength": "262144",
}

LOCAL_DEFAULTS: dict[str, str] = {
    # the user/item/KOL id maps (1M users: ~16 MB cached) join the events as broadcast hash joins
    # instead of sort-merge joins that shuffle every event once per id column
    "spark.sql.autoBroadcastJoinThreshold": "64m",
}
"""Defaults for ``local[N]`` masters only (a cluster keeps its own): see :func:`local_partitions`."""

PARTITIONS_PER_CORE = 8
"""``spark.sql.shuffle.partitions`` for ``local[N]`` is 8 x N: Spark's 200 are near-empty tasks on a
2-core machine, while 4 (the earlier setting) made 100M-event aggregations sort and spill 25M rows
per task; adaptive execution coalesces the small shuffles of the id maps and tables back down."""


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
        defaults["spark.sql.shuffle.partitions"] = str(local_partitions(master))
        defaults.update(LOCAL_DEFAULTS)
    for key, value in {**defaults, **{k: _conf_value(v) for k, v in engine.conf.items()}}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def owns_no_session() -> bool:
    """True when no SparkSession is active yet: a session built now belongs to its caller."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() is None


def release(session: SparkSession) -> None:
    """Stop ``session`` and end its JVM (started by this process's gateway).

    Why: with ``local[N]`` the JVM holds its whole heap (9 GB RSS with an 8 GB heap) until the process
    exits, while the run goes on in Python (evaluation, export) once the factors are collected; the
    bench's memory budget counts both. ``SparkContext.stop`` leaves the gateway JVM running, so its
    stdin is closed (PySpark's gateway exits on EOF) and the next session starts a new one."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    session.stop()
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = None
    SparkContext._jvm = None
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the run has what it needs from a JVM that does not exit
            proc.kill()


def local_partitions(master: str) -> int:
    """Shuffle partitions for a ``local``, ``local[N]``, ``local[*]`` or ``local[N,F]`` master."""
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    first = inside.split(",")[0].strip()
    cores = {"*": os.cpu_count() or 1}.get(first, int(first) if first.isdigit() else 1)
    return PARTITIONS_PER_CORE * max(cores, 1)


def _conf_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _python() -> str:
    import sys

    return sys.executable

"""A ``kolfeed train`` that started its own Spark session ends the JVM after the fit.

Why it matters: with ``local[N]`` the JVM keeps its whole heap (9 GB RSS at 100M events) until it
exits, while evaluation and export go on in Python; the scale benchmark's memory budget counts both.
Runs in a fresh interpreter: the other Spark test modules share one in-process session, which
releasing here would end for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, os
from training.config import EngineConfig
from training.spark.session import owns_no_session, release, spark_session

cfg = EngineConfig(name="spark", master="local[1]", conf={"spark.driver.memory": "512m"})
owned = owns_no_session()
first = spark_session(cfg)
from pyspark import SparkContext
jvm = SparkContext._gateway.proc.pid
assert first.range(5).count() == 5
release(first)
jvm_gone = not os.path.exists(f"/proc/{jvm}") or open(f"/proc/{jvm}/stat").read().split()[2] == "Z"
second = spark_session(cfg)  # a later session starts a new JVM
new_jvm = SparkContext._gateway.proc.pid
rows = second.range(3).count()
second.stop()
print(json.dumps({"owned": owned, "jvm_gone": jvm_gone, "new_jvm": new_jvm != jvm, "rows": rows}))
"""


def test_release_ends_the_jvm_and_a_later_session_starts_a_new_one() -> None:
    pytest.importorskip("pyspark")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"owned": True, "jvm_gone": True, "new_jvm": True, "rows": 3}

"""The Spark engine's time split cuts where the local engine's ``np.quantile`` cuts, and a local
master gets shuffle partitions by its cores. Pure Python: no JVM starts here."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyspark")

from training.spark.session import PARTITIONS_PER_CORE, local_partitions
from training.spark.world import lerp, quantile_index


def test_the_cut_from_two_ranks_equals_numpys_quantile() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(2, 400))
        spread = int(10 ** rng.integers(0, 7))
        ts = np.sort(rng.integers(1_767_225_600, 1_767_225_600 + spread, n))
        q = float(rng.choice([0.8, 0.75, 0.9, 0.5, rng.random()]))
        virtual = quantile_index(n, q)
        lo = int(np.floor(virtual))
        hi = min(lo + 1, n - 1)
        cut = int(lerp(float(ts[lo]), float(ts[hi]), virtual - np.floor(virtual)))
        assert cut == int(np.quantile(ts, q)), (n, q)


@pytest.mark.parametrize(
    ("master", "cores"), [("local", 1), ("local[2]", 2), ("local[4,3]", 4), ("local[*]", None)]
)
def test_local_masters_get_shuffle_partitions_by_cores(master: str, cores: int | None) -> None:
    import os

    expected = PARTITIONS_PER_CORE * (cores if cores is not None else (os.cpu_count() or 1))
    assert local_partitions(master) == expected

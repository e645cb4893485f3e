"""The chronological train/test split, written while events stream out.

Events leave the generator in global time order, so the split is a single cut timestamp:
``ts < cut_ts`` → ``split/train.parquet``, the rest → ``split/test.parquet``. The cut sits on a day
boundary so the last ``test_fraction`` of the days are test. ``split/split.json`` records
``{cut_ts, n_train, n_test}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys.schema import EVENTS
from recsys.world.config import DAY, WorldConfig
from recsys.world.write import open_writer

SPLIT_DIR = "split"


def cut_timestamp(cfg: WorldConfig) -> int:
    train_days = min(max(1, round(cfg.days * (1.0 - cfg.test_fraction))), max(1, cfg.days - 1))
    return cfg.start_ts + train_days * DAY


class SplitWriter:
    def __init__(self, out: Path, cut_ts: int) -> None:
        self.dir = out / SPLIT_DIR
        self.cut_ts = cut_ts
        self.train = open_writer(self.dir / "train.parquet", EVENTS)
        self.test = open_writer(self.dir / "test.parquet", EVENTS)
        self.n_train = 0
        self.n_test = 0

    def write(self, table: pa.Table, ts: np.ndarray) -> None:
        """``table`` rows are in time order; ``ts`` is its ts column as numpy."""
        k = int(np.searchsorted(ts, self.cut_ts, side="left"))
        if k > 0:
            self.train.write_table(table.slice(0, k))
            self.n_train += k
        if k < table.num_rows:
            self.test.write_table(table.slice(k))
            self.n_test += table.num_rows - k

    def close(self) -> dict[str, int]:
        self.train.close()
        self.test.close()
        info = {"cut_ts": self.cut_ts, "n_train": self.n_train, "n_test": self.n_test}
        (self.dir / "split.json").write_text(json.dumps(info, indent=2) + "\n")
        return info

"""The Spark engine as the training pipeline sees it: ``read`` (inputs and their rows report),
``prepare`` (data side) and ``fit``.

Why an object: one SparkSession serves both stages, and the confidences stay in Spark between them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recsys.io.errors import DataError
from recsys.io.report import RowsReport
from training.config import ConfigError, TrainConfig
from training.data import Prepared


class SparkEngine:
    def __init__(self, cfg: TrainConfig, log: logging.Logger | None = None) -> None:
        from training.spark.session import owns_no_session, spark_session

        if cfg.data.format != "world":
            raise ConfigError(
                f"data.format: engine spark reads world directories (kolfeed world, kolfeed data import), "
                f"not {cfg.data.format!r}; train {cfg.data.format} data with engine.name=local"
            )
        self.cfg = cfg
        self.log = log or logging.getLogger("kolfeed.train")
        self._owns_session = owns_no_session()
        self.spark = spark_session(cfg.engine)
        self._confidences: Any = None
        self._world: Any = None

    def read(self) -> RowsReport:
        """Read and validate the inputs (nothing is built yet): the rows read, kept and skipped per
        table and reason, as the local engine reports them, so the run can stop before the graphs."""
        from training.data import rows_used
        from training.spark.tables import spark_errors
        from training.spark.world import read_world

        if self._world is None:
            cfg = self.cfg
            root = Path(cfg.data.path)
            if not root.exists():
                raise DataError(f"{cfg.data.path}: data path does not exist (data.path)")
            events_path = Path(cfg.data.events_path) if cfg.data.events_path is not None else None
            self.log.info("spark %s (master %s)", self.spark.version, self.spark.sparkContext.master)
            with spark_errors(str(root)):
                self._world = read_world(self.spark, root, events_path, cfg.data.test_fraction)
            if self._world.intake:
                self.log.info("event export: %s", self._world.intake)
        return rows_used(self._world.reports, self.cfg)

    def prepare(self) -> Prepared:
        from recsys.graphs import UnknownIdError
        from training.spark.graphs import build, collect_labels
        from training.spark.tables import spark_errors

        rows = self.read()
        world = self._world
        assert world is not None
        with spark_errors(str(self.cfg.data.path)):
            try:
                built = build(self.spark, world, self.cfg)
            except UnknownIdError as exc:  # name a string id as the data spells it, as locally
                kind = exc.id_kind
                labels = collect_labels(world.labels)
                if kind is not None and exc.key in labels.get(kind)[0]:
                    raise exc.named(labels.label(kind, exc.key)) from None
                raise
        self._confidences = built.confidences
        built.prepared.rows = rows
        return built.prepared

    def fit(self, model: Any, prepared: Prepared) -> None:
        from training.spark.fit import fit

        if self._confidences is None:
            raise RuntimeError("SparkEngine.fit before prepare")
        from recsys.models.adaptive import DataShape

        fit(self.spark, model, self._confidences, DataShape.of(prepared.interactions.train))
        if self._owns_session:  # evaluation and export run in Python: the JVM's memory can go
            from training.spark.session import release

            self._confidences = None
            release(self.spark)

"""Most-popular baseline: every user gets the items with the most training users, best first.

The floor every personalised model must clear, and the cold-start fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.models.params import ModelParams, parse_params
from recsys.models.space import Choice, SearchSpace
from recsys.models.storage import as_train_matrix, read_model_dir, require, write_model_dir


class PopularityParams(ModelParams):
    weighted: bool = False
    """Sum confidences instead of counting users per item."""


SEARCH_SPACE: SearchSpace = {"weighted": Choice((False, True))}
TUNE_STARTS: list[dict[str, Any]] = [{"weighted": False}]


class Popularity:
    name: ClassVar[str] = "popularity"

    def __init__(self, params: PopularityParams | Mapping[str, Any] | None = None) -> None:
        self.params = parse_params(PopularityParams, params, self.name)
        self.counts: np.ndarray | None = None
        self.n_users = 0

    def fit(self, train: sp.csr_matrix) -> None:
        m = as_train_matrix(train)
        col = m if self.params.weighted else (m > 0).astype(np.float32)
        self.counts = np.asarray(col.sum(axis=0), dtype=np.float32).ravel()
        self.n_users = int(m.shape[0])

    def _counts(self) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("popularity model is not fitted")
        return self.counts

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self._counts(), (len(np.asarray(users)), 1))

    def user_embeddings(self) -> np.ndarray:
        self._counts()
        return np.ones((self.n_users, 1), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self._counts()[:, None].copy()

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "params": self.params.model_dump(), "n_users": self.n_users}

    def save(self, directory: Path) -> None:
        arrays = {"counts": self._counts(), "n_users": np.asarray(self.n_users, dtype=np.int64)}
        write_model_dir(directory, self.name, self.params.model_dump(), arrays)

    @classmethod
    def load(cls, directory: Path) -> Popularity:
        params, arrays = read_model_dir(directory, cls.name)
        model = cls(params)
        model.counts = require(arrays, "counts").astype(np.float32)
        model.n_users = int(require(arrays, "n_users").reshape(-1)[0])
        return model

"""Shared shell of the implicit-library factor models (ALS, BPR): score = user · item factors.

Both keep just two float32 factor matrices, so scoring, embeddings and npz save/load are common;
each subclass only says how to build and fit its ``implicit`` estimator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.models.params import ModelParams
from recsys.models.storage import read_model_dir, require, write_model_dir


class FactorModel:
    name: ClassVar[str] = "factors"
    params_cls: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.fit_seconds = 0.0

    def fit(self, train: sp.csr_matrix) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _factors(self) -> tuple[np.ndarray, np.ndarray]:
        if self.user_factors is None or self.item_factors is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self.user_factors, self.item_factors

    def score(self, users: np.ndarray) -> np.ndarray:
        uf, itf = self._factors()
        return np.asarray(uf[np.asarray(users, dtype=np.int64)] @ itf.T, dtype=np.float32)

    def user_embeddings(self) -> np.ndarray:
        return self._factors()[0]

    def item_embeddings(self) -> np.ndarray:
        return self._factors()[1]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "params": self.params.model_dump()}
        if self.user_factors is not None and self.item_factors is not None:
            out["embedding_dim"] = int(self.item_factors.shape[1])
            out["scores"] = "exact dot product of the exported embeddings"
            out["fit_seconds"] = round(self.fit_seconds, 3)
        return out

    def save(self, directory: Path) -> None:
        uf, itf = self._factors()
        write_model_dir(directory, self.name, self.params.model_dump(), {"user": uf, "item": itf})

    @classmethod
    def load(cls, directory: Path) -> Self:
        params, arrays = read_model_dir(directory, cls.name)
        model = cls(params)  # type: ignore[arg-type]
        model.user_factors = require(arrays, "user").astype(np.float32)
        model.item_factors = require(arrays, "item").astype(np.float32)
        return model


def to_dense_float32(x: Any) -> np.ndarray:
    """implicit may hand back its own matrix types; normalise to a C-contiguous float32 array."""
    if hasattr(x, "to_numpy"):
        x = x.to_numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))

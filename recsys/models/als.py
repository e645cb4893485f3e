"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via the ``implicit`` library: the tuned baseline.

Confidence is ``alpha * weight`` of the (behaviour-weighted) train matrix. BLAS is pinned to one
thread around ``fit`` because implicit parallelises itself and oversubscription makes it crawl.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import scipy.sparse as sp
from pydantic import Field

from recsys.models.adaptive import DataShape, adaptive_factors
from recsys.models.factorization import FactorModel, to_dense_float32
from recsys.models.params import ModelParams, parse_params
from recsys.models.space import Choice, FloatRange, IntRange, SearchSpace
from recsys.models.storage import as_train_matrix


class ALSParams(ModelParams):
    # Defaults tuned on Gowalla (small grid, 15 iterations, 256 factors): recall@20 .168 / ndcg@20
    # .139 there; alpha=1 gave .110, (reg .1, alpha 5) gave .154.
    factors: Annotated[int, Field(ge=1)] | None = None
    """None: picked from the data's shape (recsys.models.adaptive; 256 on Gowalla)."""
    regularization: float = 1.0
    alpha: float = 20.0
    iterations: int = 15
    random_state: int = 0
    show_progress: bool = False


SEARCH_SPACE: SearchSpace = {
    "factors": IntRange(16, 512, log=True),
    "regularization": FloatRange(1e-3, 10.0, log=True),
    "alpha": FloatRange(0.5, 50.0, log=True),
    "iterations": Choice((10, 15, 20)),
}
"""Where ``kolfeed tune`` searches ALS (ranges from the implicit-ALS literature and our Gowalla grid)."""

TUNE_STARTS: list[dict[str, Any]] = [
    {"regularization": 1.0, "alpha": 20.0, "iterations": 15},
    {"regularization": 0.01, "alpha": 1.0, "iterations": 15},
]
"""Trials run first: our Gowalla defaults and implicit's own defaults (factors data-adaptive)."""


class ALS(FactorModel):
    name: ClassVar[str] = "als"
    params_cls = ALSParams

    def __init__(self, params: ALSParams | Mapping[str, Any] | None = None) -> None:
        super().__init__(parse_params(ALSParams, params, self.name))

    def fit(self, train: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        p = self.params
        assert isinstance(p, ALSParams)
        m = as_train_matrix(train)
        start = time.perf_counter()
        with threadpool_limits(1, "blas"):
            est = AlternatingLeastSquares(
                factors=p.factors or adaptive_factors(self.name, DataShape.of(m)),
                regularization=p.regularization,
                alpha=p.alpha,
                iterations=p.iterations,
                random_state=p.random_state,
                calculate_training_loss=False,
            )
            est.fit(m, show_progress=p.show_progress)
        self.fit_seconds = time.perf_counter() - start
        self.user_factors = to_dense_float32(est.user_factors)
        self.item_factors = to_dense_float32(est.item_factors)

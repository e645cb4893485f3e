"""Bayesian Personalised Ranking (Rendle et al. 2009) via the ``implicit`` library.

A pairwise-ranking baseline; implicit appends a bias column, so user · item still is the score.
BPR samples positives uniformly, so confidences only matter as "interacted or not".
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
from recsys.models.space import FloatRange, IntRange, SearchSpace
from recsys.models.storage import as_train_matrix


class BPRParams(ModelParams):
    factors: Annotated[int, Field(ge=1)] | None = None
    """None: picked from the data's shape (recsys.models.adaptive)."""
    learning_rate: float = 0.05
    regularization: float = 0.0001
    iterations: int = 100
    random_state: int = 0
    show_progress: bool = False


SEARCH_SPACE: SearchSpace = {
    "factors": IntRange(16, 512, log=True),
    "learning_rate": FloatRange(0.005, 0.2, log=True),
    "regularization": FloatRange(1e-5, 1e-1, log=True),
    "iterations": IntRange(50, 300, log=True),
}
"""Where ``kolfeed tune`` searches BPR."""

TUNE_STARTS: list[dict[str, Any]] = [{"learning_rate": 0.05, "regularization": 0.0001, "iterations": 100}]
"""Trials run first: the defaults (factors data-adaptive)."""


class BPR(FactorModel):
    name: ClassVar[str] = "bpr"
    params_cls = BPRParams

    def __init__(self, params: BPRParams | Mapping[str, Any] | None = None) -> None:
        super().__init__(parse_params(BPRParams, params, self.name))

    def fit(self, train: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        p = self.params
        assert isinstance(p, BPRParams)
        m = as_train_matrix(train)
        est = BayesianPersonalizedRanking(
            factors=p.factors or adaptive_factors(self.name, DataShape.of(m)),
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            iterations=p.iterations,
            random_state=p.random_state,
        )
        start = time.perf_counter()
        with threadpool_limits(1, "blas"):
            est.fit(m, show_progress=p.show_progress)
        self.fit_seconds = time.perf_counter() - start
        self.user_factors = to_dense_float32(est.user_factors)
        self.item_factors = to_dense_float32(est.item_factors)

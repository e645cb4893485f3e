"""Score many graph-filter settings on one user sample from cached pieces: what makes tuning cheap.

Why: a graph-filter trial that refits and rescores costs one truncated SVD plus ``degree`` sparse
products per user batch. But every setting of :data:`recsys.models.graphfilter.SEARCH_SPACE` is

    s = Σ_m c_m · r P^m  +  w · (r D^{-1/2} V_k) · (Σ_j a_j V_kᵀ D^{1/2} P^j)

where the coefficients ``c`` (blur x sharpen polynomial) and ``a`` (the sharpening polynomial under
early merge) are scalars of (blur_time, sharpen_time), ``w`` is ``ideal_weight`` and ``V_k`` the
first ``k = factors`` singular vectors. So the sweep computes once: one SVD at the largest rank,
the Krylov blocks ``r P^m`` of the sampled users and ``V_maxᵀ D^{1/2} P^j``; a trial is then a few
dense multiply-adds and one (users x k) @ (k x items) product.

Exactness: a trial with ``factors=k`` equals ``GraphFilter`` fitted with the same rank of SVD
(``svd_oversample = svd_rank - k``, see :meth:`FilterSweep.model_params`): torch's randomized SVD
with the same seed and the same rank gives the same vectors, of which the model keeps the first k.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import polynomial as npoly

from recsys.models.graphfilter import GraphFilter, GraphFilterParams, step_coefficients


def filter_polynomials(params: GraphFilterParams) -> tuple[np.ndarray, np.ndarray]:
    """(c, a): coefficients in powers of P of the linear part and of the ideal part's filter."""
    blur, sharpen = step_coefficients(params)
    b = npoly.polypow(np.asarray(blur, dtype=np.float64), params.blur_steps)
    h = npoly.polypow(np.asarray(sharpen, dtype=np.float64), params.sharpen_steps)
    linear = npoly.polymul(b, h)
    ideal = h if params.early_merge else np.ones(1)
    return linear, ideal


def sweep_bytes(n_users: int, n_items: int, max_factors: int, degree: int, ideal_degree: int) -> int:
    """Memory the cached blocks of a sweep take (float32)."""
    return 4 * n_items * (n_users * (degree + 1) + max_factors * (ideal_degree + 1))


class FilterSweep:
    """Cached pieces of the graph filter for ``users`` of ``train``; :meth:`score` per setting."""

    def __init__(
        self,
        train: sp.csr_matrix,
        users: np.ndarray,
        max_factors: int,
        degree: int = 5,
        ideal_degree: int = 4,
        base: Mapping[str, Any] | None = None,
    ) -> None:
        import torch

        start = time.perf_counter()
        base_params = dict(base or {})
        n_users, n_items = train.shape
        self.max_factors = max(1, min(max_factors, n_users, n_items))
        pinned = GraphFilterParams.model_validate(
            {**base_params, "factors": self.max_factors, "early_merge": False, "sharpen_time": 0.0}
        )
        self.svd_rank = min(self.max_factors + pinned.svd_oversample, n_users, n_items)
        self._pinned = {
            "binarize": pinned.binarize,
            "svd_iterations": pinned.svd_iterations,
            "random_state": pinned.random_state,
        }
        model = GraphFilter(pinned)
        model.fit(train)
        self.svd_seconds = time.perf_counter() - start
        v = model.v
        assert v is not None
        _, di_s = model._degree_scales()
        d_sqrt = np.where(di_s > 0, 1.0 / np.maximum(di_s, 1e-30), 0.0).astype(np.float32)
        self.users = np.asarray(users, dtype=np.int64)
        self.degree = degree
        self.ideal_degree = ideal_degree
        t0 = time.perf_counter()
        with torch.no_grad():
            assert model.train is not None
            r = torch.from_numpy(model.train[self.users].toarray())
            self._u = ((r * torch.from_numpy(di_s)) @ torch.from_numpy(v)).contiguous()  # (S, kmax)
            blocks = [r]
            for _ in range(degree):
                blocks.append(model._apply_p(blocks[-1]))
            self._blocks = blocks
        self.block_seconds = time.perf_counter() - t0
        with torch.no_grad():
            g = [torch.from_numpy(np.ascontiguousarray((v * d_sqrt[:, None]).T))]
            for _ in range(ideal_degree):
                g.append(model._apply_p(g[-1]))
            self._g = g
        self.seconds = time.perf_counter() - start

    @property
    def seconds_per_user_scored(self) -> float:
        """Measured cost of the ``degree`` sparse products per user (estimates exact scoring)."""
        return self.block_seconds / max(1, len(self.users))

    def model_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Complete model params whose fitted GraphFilter scores exactly like :meth:`score`."""
        k = int(params.get("factors") or self.max_factors)
        if k > self.max_factors:
            raise ValueError(f"factors {k} > the sweep's largest rank {self.max_factors}")
        out = {**dict(params), **self._pinned, "factors": k, "svd_oversample": self.svd_rank - k}
        return GraphFilterParams.model_validate(out).model_dump()

    def score(self, params: Mapping[str, Any], rows: slice | None = None) -> np.ndarray:
        """Scores (len(users[rows]), n_items) of the setting ``params`` (a graphfilter params dict)."""
        import torch

        p = GraphFilterParams.model_validate(self.model_params(params))
        assert p.factors is not None
        linear, ideal = filter_polynomials(p)
        if len(linear) - 1 > self.degree or len(ideal) - 1 > self.ideal_degree:
            raise ValueError(
                f"setting needs P up to degree {len(linear) - 1}/{len(ideal) - 1}; the sweep cached "
                f"{self.degree}/{self.ideal_degree}"
            )
        sl = rows if rows is not None else slice(None)
        k = p.factors
        with torch.no_grad():
            item_side = self._g[0][:k] * float(ideal[0])
            for j in range(1, len(ideal)):
                item_side = item_side.add(self._g[j][:k], alpha=float(ideal[j]))
            out = (self._u[sl, :k] @ item_side).mul_(p.ideal_weight)
            for m, c in enumerate(linear):
                if c != 0.0:
                    out.add_(self._blocks[m][sl], alpha=float(c))
        return np.asarray(out.numpy(), dtype=np.float32)

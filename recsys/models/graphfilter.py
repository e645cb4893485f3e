"""Graph-filter collaborative filtering: GF-CF (Shen et al. 2021) and BSPM (Choi et al. 2023).

Why this model: it needs no gradient training, only one truncated SVD, so it is the best quality
per CPU-minute we know of on a small CPU box, and it beats LightGCN on the standard benchmarks.

Notation: R is the users x items confidence matrix, R̃ = D_u^{-1/2} R D_i^{-1/2}, and the item-item
linear filter is P = R̃ᵀR̃ (eigenvalues in [0, 1]). V holds the top-``factors`` right singular
vectors of R̃ (eigenvectors of P), and the *ideal low-pass* filter is r D_i^{-1/2} V Vᵀ D_i^{1/2}.
For a user's row r:

1. blurring: ds/dt = s (P - I) from s(0) = r, ``blur_steps`` Euler steps up to ``blur_time``;
2. early merge: s ← s + ``ideal_weight`` · ideal(r);
3. sharpening: ds/dt = -s P for ``sharpen_time`` with ``sharpen_steps`` steps of ``sharpen_solver``.

Without early merge the ideal part is added after sharpening instead. ``blur_time=1, blur_steps=1,
sharpen_time=0`` is exactly GF-CF (s = r P + α ideal(r)). The ODEs are linear, so every solver step
is a polynomial in P; P is never formed: x P is computed as (x R̃ᵀ) R̃ with sparse products, in
user batches sized to ``score_memory_mb``.

Retrieval embeddings (the FAISS dot-product approximation, ``score()`` stays exact): with
g(λ) the scalar polynomial the whole filter applies to an eigenvalue λ = σ² of P,
user = [r V g(Λ) | β r D_i^{-1/2} V], item = [V | h(P) D_i^{1/2} V] where h is the sharpening
polynomial (identity without early merge). The ideal block is exact; the linear block is its
rank-``factors`` truncation.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys.models.adaptive import DataShape, adaptive_factors
from recsys.models.params import ModelParams, parse_params
from recsys.models.space import FloatRange, IntRange, SearchSpace
from recsys.models.storage import (
    as_train_matrix,
    csr_from_arrays,
    csr_to_arrays,
    read_model_dir,
    require,
    write_model_dir,
)


class GraphFilterParams(ModelParams):
    # Defaults are the best setting found on Gowalla (BSPM with early merge; see kolfeed bench models).
    factors: Annotated[int, Field(ge=1)] | None = None
    """Number of singular vectors in the ideal low-pass filter (and the embedding blocks). None: picked
    from the data's shape (recsys.models.adaptive; 432 on Gowalla, whose best is 448)."""
    ideal_weight: float = 0.2
    blur_time: float = 1.0
    blur_steps: int = 1
    sharpen_time: float = 2.5
    sharpen_steps: int = 1
    sharpen_solver: Literal["euler", "rk4"] = "rk4"
    early_merge: bool = True
    binarize: bool = False
    """Use 0/1 interactions instead of the confidences given to ``fit``."""
    svd_oversample: int = 20
    svd_iterations: int = 3
    random_state: int = 0
    score_memory_mb: int = 1536
    """Working-memory budget of one scoring sub-batch (dense user x item blocks)."""


SEARCH_SPACE: SearchSpace = {
    "factors": IntRange(16, 1024, log=True),
    "ideal_weight": FloatRange(0.02, 3.0, log=True),
    "blur_time": FloatRange(0.0, 1.5),
    "sharpen_time": FloatRange(0.0, 3.0),
}
"""Where ``kolfeed tune`` searches: rank and weight of the ideal low-pass, blur and sharpen times.
The solver structure (one blur step, one RK4 sharpen step, early merge) stays fixed, so every point
is a degree-5 polynomial in P and :class:`recsys.models.graphfilter_sweep.FilterSweep` scores it
from cached pieces. ``blur_time=1, sharpen_time=0`` is GF-CF; ``blur_time=0, sharpen_time=0`` the
pure SVD (ideal low-pass) filter."""

TUNE_STARTS: list[dict[str, Any]] = [
    {"factors": 256, "ideal_weight": 0.3, "blur_time": 1.0, "sharpen_time": 0.0},  # GF-CF's paper setting
    {"ideal_weight": 0.3, "blur_time": 1.0, "sharpen_time": 0.0},  # GF-CF, data-adaptive rank
    {"ideal_weight": 0.2, "blur_time": 1.0, "sharpen_time": 2.5},  # BSPM as tuned on Gowalla
    {"ideal_weight": 1.0, "blur_time": 0.0, "sharpen_time": 0.0},  # SVD (ideal low-pass) filter
    {"ideal_weight": 1.0, "blur_time": 1.0, "sharpen_time": 1.0},
]
"""Trials run first (a missing ``factors`` means the data-adaptive value): known-good settings from
the literature, so the search starts at the baselines it must beat."""


def step_coefficients(params: GraphFilterParams) -> tuple[list[float], list[float]]:
    """Polynomial coefficients (in powers of P) of one blurring step and one sharpening step."""
    hb = params.blur_time / params.blur_steps
    blur = [1.0 - hb, hb]
    if params.sharpen_time <= 0:
        return blur, [1.0]
    hs = params.sharpen_time / params.sharpen_steps
    if params.sharpen_solver == "euler":
        sharpen = [1.0, -hs]
    else:  # classical RK4 on a linear ODE is its degree-4 Taylor polynomial
        sharpen = [(-hs) ** j / math.factorial(j) for j in range(5)]
    return blur, sharpen


def _poly_scalar(coeffs: list[float], lam: np.ndarray, power: int) -> np.ndarray:
    out = np.zeros_like(lam)
    for j, c in enumerate(coeffs):
        out += c * lam**j
    return out**power


class GraphFilter:
    name: ClassVar[str] = "graphfilter"

    def __init__(self, params: GraphFilterParams | Mapping[str, Any] | None = None) -> None:
        self.params = parse_params(GraphFilterParams, params, self.name)
        p = self.params
        if p.blur_steps < 1 or p.sharpen_steps < 1:
            from recsys.models.params import ModelConfigError

            raise ModelConfigError("graphfilter: blur_steps and sharpen_steps must be >= 1")
        self.train: sp.csr_matrix | None = None
        self.v: np.ndarray | None = None  # (n_items, k) right singular vectors of R̃
        self.sigma: np.ndarray | None = None  # (k,) singular values of R̃
        self.item_ideal: np.ndarray | None = None  # (n_items, k) h(P) D_i^{1/2} V
        self.fit_seconds = 0.0
        self.svd_seconds = 0.0
        self._ops: Any = None  # torch sparse R̃ and R̃ᵀ, rebuilt lazily
        self._scales: tuple[sp.csr_matrix, np.ndarray, np.ndarray] | None = None

    # ---- fitting -------------------------------------------------------------------------------
    def fit(self, train: sp.csr_matrix) -> None:
        import torch

        start = time.perf_counter()
        m = as_train_matrix(train)
        if self.params.binarize:
            m.data[:] = 1.0
        self.train = m
        self._ops = None
        rn = self._normalized()
        n_users, n_items = m.shape
        k = max(1, min(self.factors_for(m), n_users, n_items))
        q = min(k + self.params.svd_oversample, n_users, n_items)
        coo = rn.tocoo()
        rt = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
            torch.from_numpy(coo.data.astype(np.float32)),
            size=coo.shape,
            check_invariants=False,
        ).coalesce()
        t_svd = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(self.params.random_state)
            _, s, v = torch.svd_lowrank(rt, q=q, niter=self.params.svd_iterations)
        self.svd_seconds = time.perf_counter() - t_svd
        self.sigma = s[:k].numpy().astype(np.float32)
        self.v = np.ascontiguousarray(v[:, :k].numpy(), dtype=np.float32)
        _, di_inv_sqrt = self._degree_scales()
        d_sqrt = np.where(di_inv_sqrt > 0, 1.0 / np.maximum(di_inv_sqrt, 1e-30), 0.0).astype(np.float32)
        base = self.v * d_sqrt[:, None]  # D_i^{1/2} V
        if self.params.early_merge:
            _, sharpen = step_coefficients(self.params)
            # h(P) applied to the columns of D^{1/2} V (P symmetric, so rows of the transpose)
            base = self._apply_poly(base.T.copy(), sharpen, self.params.sharpen_steps).T
        self.item_ideal = np.ascontiguousarray(base, dtype=np.float32)
        self.fit_seconds = time.perf_counter() - start

    def factors_for(self, train: sp.csr_matrix) -> int:
        """The configured factor count, or the data-adaptive one when the config leaves it unset."""
        if self.params.factors is not None:
            return self.params.factors
        return adaptive_factors(self.name, DataShape.of(train))

    def _fitted(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
        if self.train is None or self.v is None or self.sigma is None or self.item_ideal is None:
            raise RuntimeError("graphfilter model is not fitted")
        return self.train, self.v, self.sigma, self.item_ideal

    def _degree_scales(self) -> tuple[np.ndarray, np.ndarray]:
        """(D_u^{-1/2}, D_i^{-1/2}) diagonals (0 for empty rows/columns), cached per train matrix."""
        assert self.train is not None
        if self._scales is not None and self._scales[0] is self.train:
            return self._scales[1], self._scales[2]
        m = self.train
        du = np.asarray(m.sum(axis=1), dtype=np.float64).ravel()
        di = np.asarray(m.sum(axis=0), dtype=np.float64).ravel()
        du_s = np.where(du > 0, 1.0 / np.sqrt(np.maximum(du, 1e-30)), 0.0)
        di_s = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1e-30)), 0.0)
        self._scales = (self.train, du_s.astype(np.float32), di_s.astype(np.float32))
        return self._scales[1], self._scales[2]

    def _normalized(self) -> sp.csr_matrix:
        assert self.train is not None
        du_s, di_s = self._degree_scales()
        rn = sp.diags(du_s) @ self.train @ sp.diags(di_s)
        return sp.csr_matrix(rn, dtype=np.float32)

    def _operators(self) -> Any:
        if self._ops is None:
            import torch

            def to_torch(x: sp.csr_matrix) -> Any:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                    return torch.sparse_csr_tensor(
                        torch.from_numpy(x.indptr.astype(np.int64)),
                        torch.from_numpy(x.indices.astype(np.int64)),
                        torch.from_numpy(x.data.astype(np.float32)),
                        size=x.shape,
                        check_invariants=False,
                    )

            rn = self._normalized()
            self._ops = (to_torch(rn), to_torch(sp.csr_matrix(rn.T)))
        return self._ops

    # ---- filtering -----------------------------------------------------------------------------
    def _apply_p(self, x: Any) -> Any:
        """x P = (x R̃ᵀ) R̃ for a dense (B, n_items) torch block."""
        import torch

        rn, rn_t = self._operators()
        return torch.sparse.mm(rn_t, torch.sparse.mm(rn, x.T.contiguous())).T.contiguous()

    def _apply_poly(self, x: Any, coeffs: list[float], power: int) -> Any:
        """x · (Σ_j c_j P^j)^power, returned as a numpy array if x was one."""
        import torch

        as_numpy = isinstance(x, np.ndarray)
        cur: Any = torch.from_numpy(x) if as_numpy else x
        for _ in range(power):
            if len(coeffs) == 1:
                cur = cur * coeffs[0]
                continue
            acc = cur * coeffs[0]
            term = cur
            for c in coeffs[1:]:
                term = self._apply_p(term)
                acc.add_(term, alpha=c)
            cur = acc
        return cur.numpy() if as_numpy else cur

    def _sub_batch(self) -> int:
        n_users, n_items = self._fitted()[0].shape
        per_user = 4 * (6 * n_items + n_users)
        return max(16, int(self.params.score_memory_mb * 2**20 // per_user))

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch

        train, v, _, _ = self._fitted()
        _, di_s = self._degree_scales()
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), train.shape[1]), dtype=np.float32)
        blur, sharpen = step_coefficients(self.params)
        p = self.params
        v_t = torch.from_numpy(v)
        di_t = torch.from_numpy(di_s)
        d_sqrt = torch.where(di_t > 0, 1.0 / di_t.clamp_min(1e-30), torch.zeros_like(di_t))
        step = self._sub_batch()
        with torch.no_grad():
            for s in range(0, len(users), step):
                r = torch.from_numpy(train[users[s : s + step]].toarray())
                ideal = ((r * di_t) @ v_t) @ v_t.T * d_sqrt
                x: Any = self._apply_poly(r, blur, p.blur_steps)
                if p.early_merge:
                    x = self._apply_poly(x.add_(ideal, alpha=p.ideal_weight), sharpen, p.sharpen_steps)
                else:
                    x = self._apply_poly(x, sharpen, p.sharpen_steps).add_(ideal, alpha=p.ideal_weight)
                out[s : s + step] = x.numpy()
        return out

    # ---- embeddings ----------------------------------------------------------------------------
    def spectral_response(self) -> np.ndarray:
        """g(σ²): what the blur + sharpen polynomial does to each kept eigenvalue of P."""
        _, _, sigma, _ = self._fitted()
        lam = sigma.astype(np.float64) ** 2
        blur, sharpen = step_coefficients(self.params)
        g = _poly_scalar(blur, lam, self.params.blur_steps) * _poly_scalar(
            sharpen, lam, self.params.sharpen_steps
        )
        return g.astype(np.float32)

    def user_embeddings(self) -> np.ndarray:
        train, v, _, _ = self._fitted()
        _, di_s = self._degree_scales()
        linear = np.asarray(train @ v, dtype=np.float32) * self.spectral_response()[None, :]
        ideal = np.asarray(train @ (v * di_s[:, None]), dtype=np.float32) * self.params.ideal_weight
        return np.ascontiguousarray(np.hstack([linear, ideal]), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        _, v, _, item_ideal = self._fitted()
        return np.ascontiguousarray(np.hstack([v, item_ideal]), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.name,
            "params": self.params.model_dump(),
            "scores": "exact via score(); user_embeddings() . item_embeddings() is the rank-"
            f"{self.params.factors or 'factors'} spectral approximation used for FAISS retrieval",
        }
        if self.v is not None:
            out["factors_used"] = int(self.v.shape[1])
            out["embedding_dim"] = int(2 * self.v.shape[1])
            out["fit_seconds"] = round(self.fit_seconds, 3)
        return out

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        train, v, sigma, item_ideal = self._fitted()
        arrays = {"v": v, "sigma": sigma, "item_ideal": item_ideal, **csr_to_arrays("train", train)}
        write_model_dir(directory, self.name, self.params.model_dump(), arrays)

    @classmethod
    def load(cls, directory: Path) -> GraphFilter:
        params, arrays = read_model_dir(directory, cls.name)
        model = cls(params)
        model.train = csr_from_arrays("train", arrays).astype(np.float32)
        model.v = require(arrays, "v").astype(np.float32)
        model.sigma = require(arrays, "sigma").astype(np.float32)
        model.item_ideal = require(arrays, "item_ideal").astype(np.float32)
        return model

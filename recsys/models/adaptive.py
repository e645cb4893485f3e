"""Data-adaptive defaults: size parameters a config leaves unset are picked from the data's shape.

Why: a factor count fitted to one dataset is wrong for another. On Gowalla (29,858 users x 40,981
items, density 0.07%) the graph filter is best near 448 factors; on MovieLens-100k (943 x 1,682,
density 5%) near 64, and 448 there loses ~15% recall. What the two have in common is the number of
informative directions of the interaction matrix, which grows like the square root of its smaller
side (a user x item matrix has at most min(users, items) of them, and noise fills the tail).

The rule (one line per model, constants in :data:`FACTOR_SCALE`):

    factors = clip(round_to_8(scale * sqrt(min(n_users, n_items))), 8, cap)

with scale 2.5 for the graph filter's ideal low-pass (Gowalla: 432, ML-100k: 80) and 1.5 for the
learned factor models ALS/BPR (Gowalla: 256, ML-100k: 48), which over-fit sooner per factor.
The result never exceeds min(n_users, n_items) - 1. ``kolfeed tune`` searches around it instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import scipy.sparse as sp

FACTOR_SCALE: dict[str, tuple[float, int]] = {
    "graphfilter": (2.5, 1024),
    "als": (1.5, 512),
    "bpr": (1.5, 512),
}
"""model -> (scale on sqrt(min side), upper cap) of the adaptive factor rule."""


@dataclass(frozen=True)
class DataShape:
    n_users: int
    n_items: int
    nnz: int

    @classmethod
    def of(cls, matrix: sp.csr_matrix) -> DataShape:
        n_users, n_items = matrix.shape
        return cls(int(n_users), int(n_items), int(matrix.nnz))

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.nnz / cells if cells else 0.0


def adaptive_factors(model: str, shape: DataShape) -> int:
    """The factor count of ``model`` for data of this shape (see the module docstring for the rule)."""
    scale, cap = FACTOR_SCALE[model]
    side = max(1, min(shape.n_users, shape.n_items))
    k = round(scale * math.sqrt(side) / 8.0) * 8
    k = min(max(k, 8), cap)
    return max(1, min(k, side - 1))

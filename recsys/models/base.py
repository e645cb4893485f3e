"""The one small contract every model follows (after implicit's): fit, score, embeddings, save/load.

Scores are "higher is better" for user x item. ``user_embeddings() @ item_embeddings().T`` must
rank items the way serving should retrieve them (FAISS inner product); a model whose exact score is
not a dot product exports the best dot-product approximation it has and says so in ``describe()``.
Saving writes ``.npz``/``.json`` files into a directory; loading never unpickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp


@runtime_checkable
class Recommender(Protocol):
    name: ClassVar[str]

    def fit(self, train: sp.csr_matrix) -> None:
        """Learn from a users x items confidence matrix (float32 CSR)."""
        ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores, shape (len(users), n_items), for dense user indices."""
        ...

    def user_embeddings(self) -> np.ndarray: ...

    def item_embeddings(self) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters and facts worth recording in the manifest."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Recommender: ...

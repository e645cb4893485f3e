"""The one in-memory form every model trains on: a user x item matrix plus a held-out split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recsys.id_labels import IdLabels


@dataclass
class Interactions:
    """Rows are users, columns items, in dense index space 0..n-1.

    ``train`` holds (possibly behaviour-weighted) confidences; ``test`` is binary held-out truth.
    ``user_ids``/``item_ids`` map the dense index back to the dataset's ids as int64 keys
    (:mod:`recsys.ids`); ``labels`` holds the text of the hashed (string) ones.
    ``extra_test`` holds further held-out matrices by name (e.g. ``"buy"`` for recall of held-out buys).
    ``train_time`` (when the data has timestamps) has the pattern of ``train`` and holds the latest
    timestamp of each training pair, so a validation split can be carved chronologically.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    extra_test: dict[str, sp.csr_matrix] = field(default_factory=dict)
    labels: IdLabels = field(default_factory=IdLabels)
    train_time: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def __post_init__(self) -> None:
        if self.train.shape != self.test.shape:
            raise ValueError(f"train shape {self.train.shape} != test shape {self.test.shape}")
        if len(self.user_ids) != self.train.shape[0] or len(self.item_ids) != self.train.shape[1]:
            raise ValueError("id maps do not match the matrix shape")
        if self.train_time is not None and self.train_time.shape != self.train.shape:
            raise ValueError(f"train_time shape {self.train_time.shape} != train shape {self.train.shape}")

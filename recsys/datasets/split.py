"""Shared by the RecBole and MovieLens loaders: dense id maps and a per-user chronological split.

Why chronological per user: the last interactions of each user are what a recommender must
predict, and holding out by time per user keeps every user in both halves (the usual protocol for
MovieLens-style data; the test count is ``floor(n_user * test_ratio)``, as RecBole computes it).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys.id_labels import IdLabels
from recsys.ids import IdError, id_keys
from recsys.interactions import Interactions
from recsys.io.errors import DatasetError
from recsys.validation import pair_times


def dense_ids(tokens: pa.Array, kind: str, labels: IdLabels) -> tuple[np.ndarray, np.ndarray]:
    """(dense index per row, int64 key per dense index). Tokens are external ids (:mod:`recsys.ids`):
    canonical integers are their own keys (dense order: numeric), other strings hash (dense order:
    the strings' lexicographic order) and their labels are added to ``labels`` under ``kind``."""
    keys = id_keys(tokens, f"{kind}_id")
    if len(keys) == 0 or keys.min() >= 0:
        ids, codes = np.unique(keys, return_inverse=True)
        return codes.astype(np.int64).ravel(), ids
    strings = np.asarray(pc.cast(tokens, pa.string()).to_pylist(), dtype=np.str_)
    texts, first, codes = np.unique(strings, return_index=True, return_inverse=True)
    ids = keys[first]
    try:
        labels.add(kind, ids, texts)
    except IdError as exc:
        raise DatasetError(str(exc)) from None
    return codes.astype(np.int64).ravel(), ids


def binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A float32 0/1 matrix from (user, item) pairs; duplicates count once."""
    data = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def chronological_split(
    user_tokens: pa.Array,
    item_tokens: pa.Array,
    timestamps: np.ndarray,
    *,
    test_ratio: float = 0.2,
    ratings: np.ndarray | None = None,
    min_rating: float | None = None,
) -> Interactions:
    """Per user, the last ``floor(n * test_ratio)`` interactions by timestamp go to test (ties keep
    file order). With ``min_rating``, rows rated below it are dropped first (implicit feedback)."""
    if not 0.0 <= test_ratio < 1.0:
        raise DatasetError(f"test_ratio must be in [0, 1), got {test_ratio}")
    if min_rating is not None:
        if ratings is None:
            raise DatasetError("min_rating was given but the data has no rating column")
        keep = ratings >= min_rating
        if not keep.any():
            raise DatasetError(f"no interaction has rating >= {min_rating}")
        rows = pa.array(keep)
        user_tokens, item_tokens = user_tokens.filter(rows), item_tokens.filter(rows)
        timestamps = timestamps[keep]
    labels = IdLabels()
    users, user_ids = dense_ids(user_tokens, "user", labels)
    items, item_ids = dense_ids(item_tokens, "item", labels)
    n = len(users)
    order = np.lexsort((np.arange(n), timestamps, users))
    counts = np.bincount(users, minlength=len(user_ids))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_users = users[order]
    rank = np.arange(n) - first[sorted_users]
    n_test = np.floor(counts * test_ratio + 1e-9).astype(np.int64)
    is_test = np.zeros(n, dtype=bool)
    is_test[order] = rank >= counts[sorted_users] - n_test[sorted_users]
    shape = (len(user_ids), len(item_ids))
    train = binary_csr(users[~is_test], items[~is_test], shape)
    return Interactions(
        train=train,
        test=binary_csr(users[is_test], items[is_test], shape),
        user_ids=user_ids,
        item_ids=item_ids,
        labels=labels,
        train_time=pair_times(train, users[~is_test], items[~is_test], timestamps[~is_test]),
    )

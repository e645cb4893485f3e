"""A validation split carved from the training matrix only, for tuning without touching the test split.

Why per user: the evaluation protocol ranks every item for every user, so each validated user must
keep training history. Per user with ``n >= 2`` training items, ``max(1, floor(n * fraction))`` of
them are held out: the latest ones when timestamps exist (the test split of time-stamped data is
chronological, and validation must ask the same question), else a seeded uniform choice. Users with
fewer than two items stay whole in the validation-train part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class ValidationSplit:
    train: sp.csr_matrix
    """The training matrix minus the held-out pairs (confidences kept)."""
    valid: sp.csr_matrix
    """Binary held-out pairs."""
    seen: sp.csr_matrix
    """Binary mask of ``train``: what evaluation excludes from each ranking."""
    chronological: bool


def pair_times(pattern: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, ts: np.ndarray) -> sp.csr_matrix:
    """Float64 CSR with ``pattern``'s entries, each holding the latest ``ts`` of its (row, col) events;
    an entry no event names gets the earliest time (it is never held out before a timed one)."""
    out = sp.csr_matrix(pattern, dtype=np.float64, copy=True)
    out.sort_indices()
    n_cols = out.shape[1]
    entry_keys = (
        np.repeat(np.arange(out.shape[0], dtype=np.int64), np.diff(out.indptr)) * n_cols + out.indices
    )
    ts = np.asarray(ts, dtype=np.float64)
    out.data[:] = ts.min() if len(ts) else 0.0
    if len(ts) == 0:
        return out
    keys = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    order = np.lexsort((ts, keys))
    keys, ts = keys[order], ts[order]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    keys, ts = keys[last], ts[last]  # unique pair keys, sorted, with their latest time
    pos = np.clip(np.searchsorted(keys, entry_keys), 0, len(keys) - 1)
    hit = keys[pos] == entry_keys
    out.data[hit] = ts[pos[hit]]
    return out


def holdout_split(
    train: sp.csr_matrix,
    fraction: float = 0.2,
    seed: int = 0,
    train_time: sp.csr_matrix | None = None,
) -> ValidationSplit:
    """Hold out part of each user's training items (latest by ``train_time``, else seeded random)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    m = sp.csr_matrix(train, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    n = np.diff(m.indptr)
    n_hold = np.where(n >= 2, np.maximum(1, np.floor(n * fraction + 1e-9)).astype(np.int64), 0)
    rows = np.repeat(np.arange(m.shape[0]), n)
    if train_time is not None:
        t = sp.csr_matrix(train_time, dtype=np.float64, copy=True)
        t.sort_indices()
        if (
            t.shape != m.shape
            or not np.array_equal(t.indptr, m.indptr)
            or not np.array_equal(t.indices, m.indices)
        ):
            raise ValueError("train_time does not have the pattern of the training matrix")
        key = t.data
    else:
        key = np.random.default_rng(seed).random(m.nnz)
    # rank of each entry within its row by key (ties by column): the top n_hold ranks are held out
    order = np.lexsort((m.indices, key, rows))
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - m.indptr[rows[order]]
    hold = rank >= (n - n_hold)[rows]
    keep = ~hold
    shape = m.shape
    vtrain = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=shape, dtype=np.float32)
    valid = sp.csr_matrix(
        (np.ones(int(hold.sum()), dtype=np.float32), (rows[hold], m.indices[hold])), shape=shape
    )
    seen = vtrain.copy()
    seen.data[:] = 1.0
    return ValidationSplit(train=vtrain, valid=valid, seen=seen, chronological=train_time is not None)

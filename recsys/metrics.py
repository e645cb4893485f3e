"""Full-ranking top-K metrics (the LightGCN protocol), one code path for models and for serving.

Every item is ranked for every evaluated user, the user's training items are excluded, and users
with no test items are skipped. Per user, with ``hits`` the relevant items among the top K:

- ``recall@K``   = hits / |test items of the user|
- ``ndcg@K``     = DCG / ideal DCG, binary relevance, gain 1/log2(rank+1); ideal over min(|test|, K)
- ``hit@K``      = 1 if any hit
- ``mrr@K``      = 1 / rank of the first hit (0 if none)

and averaged over users; ``coverage@K`` is the fraction of the catalog appearing in any top-K list.
:func:`evaluate` scores in user batches (memory bounded by ``batch_size x n_items``) and picks the
top K with ``torch.topk``; :func:`evaluate_topk` takes an already computed top-K index array (e.g.
from FAISS plus serving filters) and uses the very same accumulation code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

Scorer = Callable[[np.ndarray], np.ndarray]
METRIC_NAMES = ("recall", "ndcg", "hit", "mrr", "coverage")
MAX_SCORE_CELLS = 1 << 26
"""Users x items scored per evaluation batch at most (256 MB per float32 copy): a shop catalogue of
hundreds of thousands of items would otherwise need several GB per batch of ``batch_size`` users.
Batching does not change the metrics."""


class _Accumulator:
    """Sums per-user metrics over batches; finishes into the averaged dict."""

    def __init__(self, ks: Sequence[int], n_items: int) -> None:
        if not ks:
            raise ValueError("ks must name at least one cutoff")
        if any(int(k) < 1 for k in ks):
            raise ValueError(f"cutoffs must be >= 1, got {list(ks)}")
        self.ks = sorted({int(k) for k in ks})
        self.kmax = self.ks[-1]
        self.n_items = n_items
        self.discount = 1.0 / np.log2(np.arange(2, self.kmax + 2, dtype=np.float64))
        self.ideal = np.cumsum(self.discount)
        self.sums = {f"{m}@{k}": 0.0 for k in self.ks for m in ("recall", "ndcg", "hit", "mrr")}
        self.covered = {k: np.zeros(n_items, dtype=bool) for k in self.ks}
        self.n_users = 0

    def add(self, top: np.ndarray, test_rows: sp.csr_matrix) -> None:
        """``top``: (B, >=kmax) item indices best first (-1 = padding); ``test_rows``: the B users' truth."""
        top = np.asarray(top)
        if top.ndim != 2 or top.shape[0] != test_rows.shape[0]:
            raise ValueError(f"top-k array shape {top.shape} does not match {test_rows.shape[0]} users")
        if top.shape[1] < self.kmax:
            pad = np.full((top.shape[0], self.kmax - top.shape[1]), -1, dtype=np.int64)
            top = np.concatenate([top.astype(np.int64), pad], axis=1)
        top = top[:, : self.kmax].astype(np.int64)
        if top.size and int(top.max()) >= self.n_items:
            raise ValueError(f"top-k array holds item index {int(top.max())} >= n_items {self.n_items}")
        n_test = np.diff(test_rows.indptr)
        keep = n_test > 0
        if not keep.any():
            return
        top, n_test = top[keep], n_test[keep]
        test_rows = test_rows[np.flatnonzero(keep)]
        valid = top >= 0
        truth = np.zeros((top.shape[0], self.n_items), dtype=bool)
        truth[np.repeat(np.arange(top.shape[0]), np.diff(test_rows.indptr)), test_rows.indices] = True
        hits = truth[np.arange(top.shape[0])[:, None], np.where(valid, top, 0)] & valid
        for k in self.ks:
            h = hits[:, :k]
            n_hit = h.sum(axis=1)
            self.sums[f"recall@{k}"] += float((n_hit / n_test).sum())
            self.sums[f"hit@{k}"] += float((n_hit > 0).sum())
            dcg = (h * self.discount[:k]).sum(axis=1)
            idcg = self.ideal[np.minimum(n_test, k) - 1]
            self.sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
            first = np.argmax(h, axis=1)
            self.sums[f"mrr@{k}"] += float(np.where(n_hit > 0, 1.0 / (first + 1), 0.0).sum())
            shown = top[:, :k][valid[:, :k]]
            self.covered[k][shown] = True
        self.n_users += int(top.shape[0])

    def result(self) -> dict[str, float]:
        if self.n_users == 0:
            raise ValueError("no user has test items; nothing to evaluate")
        out: dict[str, float] = {}
        for k in self.ks:
            for m in ("recall", "ndcg", "hit", "mrr"):
                out[f"{m}@{k}"] = self.sums[f"{m}@{k}"] / self.n_users
            out[f"coverage@{k}"] = float(self.covered[k].mean()) if self.n_items else 0.0
        return out


def _check_pair(train: Any, test: Any) -> None:
    if train is not None and train.shape != test.shape:
        raise ValueError(f"train shape {train.shape} != test shape {test.shape}")


def _users_with_test(test: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
    candidates = np.arange(test.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    return candidates[np.diff(test.indptr)[candidates] > 0]


def _batches(users: np.ndarray, batch_size: int, progress: bool, desc: str) -> Iterable[np.ndarray]:
    starts = range(0, len(users), batch_size)
    if progress:
        from recsys.progress import progress as progress_bar

        starts = progress_bar(starts, desc=desc, unit="batch", leave=False)  # type: ignore[assignment]
    for s in starts:
        yield users[s : s + batch_size]


def top_k_excluding(scores: np.ndarray, exclude_rows: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Top-``k`` item indices per row of a dense score block, best first, ``exclude_rows`` items masked."""
    import torch

    block = torch.as_tensor(np.ascontiguousarray(scores, dtype=np.float32)).clone()
    if exclude_rows is not None and exclude_rows.nnz:
        rows = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
        block[torch.from_numpy(rows), torch.from_numpy(exclude_rows.indices.astype(np.int64))] = -np.inf
    block = torch.nan_to_num(block, nan=-np.inf)
    k = min(k, block.shape[1])
    return torch.topk(block, k, dim=1, sorted=True).indices.numpy()


def evaluate(
    model_or_scorer: Any,
    train: Any,
    test: Any,
    ks: Sequence[int] = (20,),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Full-ranking metrics of a model (anything with ``score(users)``) or a plain scorer function.

    ``train`` items are excluded from each user's ranking (pass None to exclude nothing);
    ``users`` restricts evaluation to a subset (e.g. a sample on a huge dataset).
    """
    test = sp.csr_matrix(test)
    _check_pair(train, test)
    train_csr = sp.csr_matrix(train) if train is not None else None
    scorer: Scorer = model_or_scorer.score if hasattr(model_or_scorer, "score") else model_or_scorer
    acc = _Accumulator(ks, int(test.shape[1]))
    batch_size = max(1, min(batch_size, MAX_SCORE_CELLS // max(1, int(test.shape[1]))))
    for batch in _batches(_users_with_test(test, users), batch_size, progress, "evaluate"):
        scores = np.asarray(scorer(batch))
        if scores.shape != (len(batch), test.shape[1]):
            raise ValueError(f"scorer returned shape {scores.shape}, expected {(len(batch), test.shape[1])}")
        top = top_k_excluding(scores, train_csr[batch] if train_csr is not None else None, acc.kmax)
        acc.add(top, test[batch])
    return acc.result()


def evaluate_topk(
    top_items: np.ndarray,
    test: Any,
    users: np.ndarray | None = None,
    ks: Sequence[int] = (20,),
) -> dict[str, float]:
    """The same metrics from precomputed top-K lists (row i = ``users[i]``, or user i if None).

    The caller is responsible for having excluded training items. Entries of -1 are padding
    (fewer than K candidates) and count as misses. Users with no test items are skipped.
    """
    test = sp.csr_matrix(test)
    top_items = np.asarray(top_items)
    rows = np.arange(top_items.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    if len(rows) != top_items.shape[0]:
        raise ValueError(f"{len(rows)} users but {top_items.shape[0]} top-k rows")
    if len(rows) and (rows.min() < 0 or rows.max() >= test.shape[0]):
        raise ValueError(f"user index out of range for a test matrix with {test.shape[0]} users")
    acc = _Accumulator(ks, int(test.shape[1]))
    for s in range(0, len(rows), 4096):
        acc.add(top_items[s : s + 4096], test[rows[s : s + 4096]])
    return acc.result()

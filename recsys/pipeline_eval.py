"""Offline check of the *serving* pipeline: score the pages the ranker would serve, not the raw model.

Why: full-ranking metrics of the model say nothing about what ANN recall, candidate caps, trending
mixing, filters and diversity do to the page a user actually sees. Here every test user gets the
top-k list :class:`FeedRanker` would serve (their training items passed as ``seen``, just as full
ranking excludes them), scored with :func:`recsys.metrics.evaluate_topk`.

Two paths give the same lists: a vectorised batch path for embeddings-only runs (no world tables:
candidates are ANN ∪ popular, score = weighted normalised dot + popularity, no caps apply), fast
enough for Gowalla's ~30k users, and a per-user path through ``FeedRanker.rank`` (with FAISS
searches batched) for runs that carry a world.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.index import search
from recsys.metrics import evaluate_topk
from recsys.ranking.candidates import MAX_EXTRA_ANN
from recsys.ranking.context import UserContext
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.scoring import trend_signal
from recsys.ranking.variants import RankingVariant


class PipelineEvalError(ValueError):
    """Evaluation data that does not fit the run (message says what)."""


def _column_maps(model: FeedModel, n_cols: int, item_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(matrix column → model item row, model item row → matrix column), -1 where unmapped."""
    if item_ids is None:
        if n_cols != model.n_items:
            raise PipelineEvalError(
                f"test matrix has {n_cols} item columns but the run has {model.n_items} items; pass item_ids"
            )
        col_to_row = np.arange(n_cols, dtype=np.int64)
    else:
        if len(item_ids) != n_cols:
            raise PipelineEvalError(f"{len(item_ids)} item ids for {n_cols} matrix columns")
        col_to_row = model.items.rows(np.asarray(item_ids, dtype=np.int64))
    row_to_col = np.full(model.n_items, -1, dtype=np.int64)
    ok = col_to_row >= 0
    row_to_col[col_to_row[ok]] = np.flatnonzero(ok)
    return col_to_row, row_to_col


def _seen_rows(train: sp.csr_matrix | None, u: int, col_to_row: np.ndarray) -> np.ndarray:
    if train is None:
        return np.zeros(0, dtype=np.int64)
    cols = train.indices[train.indptr[u] : train.indptr[u + 1]]
    rows = col_to_row[cols]
    return np.unique(rows[rows >= 0])


def topk_fast(
    model: FeedModel,
    variant: RankingVariant,
    user_rows: np.ndarray,
    seen: list[np.ndarray],
    k: int,
) -> np.ndarray:
    """Vectorised ``FeedRanker.rank`` for an embeddings-only model: (B, k) item rows, -1 padded.

    ``user_rows`` are model user rows (-1 = no embedding); ``seen[i]`` the sorted item rows to exclude."""
    cc, w = variant.candidates, variant.weights
    b = len(user_rows)
    n_seen = np.array([len(s) for s in seen], dtype=np.int64)
    extra = np.minimum(n_seen, MAX_EXTRA_ANN)
    known = user_rows >= 0
    q = model.user_emb[np.maximum(user_rows, 0)]

    ann_w = min(model.n_items, cc.ann_k + int(extra.max(initial=0))) if cc.ann_k > 0 else 0
    if ann_w:
        ann_s, ann_i = search(model.index, q, ann_w)
        width = np.minimum(cc.ann_k + extra, model.n_items)
        ann_ok = (np.arange(ann_w)[None, :] < width[:, None]) & known[:, None] & (ann_i >= 0)
    else:
        ann_s = np.zeros((b, 0), np.float32)
        ann_i = np.zeros((b, 0), np.int64)
        ann_ok = np.zeros((b, 0), bool)
    tr_w = (
        min(len(model.popular_items), cc.trending_k + int(extra.max(initial=0))) if cc.trending_k > 0 else 0
    )
    pop = model.popular_items[:tr_w]
    tr_i = np.broadcast_to(pop, (b, tr_w))
    tr_s = q @ model.item_emb[pop].T if tr_w else np.zeros((b, 0), np.float32)
    tr_ok = np.arange(tr_w)[None, :] < np.minimum(cc.trending_k + extra, len(model.popular_items))[:, None]

    ids = np.concatenate([ann_i, tr_i], axis=1).astype(np.int64)
    dots = np.concatenate([ann_s, tr_s], axis=1).astype(np.float32)
    ok = np.concatenate([ann_ok, tr_ok], axis=1)
    # drop seen
    for i, s in enumerate(seen):
        if len(s):
            ok[i] &= ~np.isin(ids[i], s)
    # drop duplicates (an item both in ANN and popular): sort, mark repeats of valid ids
    key = np.where(ok, ids, model.n_items + np.arange(ids.shape[1])[None, :])
    order = np.argsort(key, axis=1, kind="stable")
    sk = np.take_along_axis(key, order, axis=1)
    dup = np.zeros_like(ok)
    dup[:, 1:] = sk[:, 1:] == sk[:, :-1]
    np.put_along_axis(ok, order, np.take_along_axis(ok, order, axis=1) & ~dup, axis=1)

    dots = np.where(known[:, None], dots, 0.0)
    lo = np.where(ok, dots, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(ok, dots, -np.inf).max(axis=1, initial=-np.inf)
    span = hi - lo
    norm = np.where(
        (span > 1e-12)[:, None], (dots - lo[:, None]) / np.where(span > 1e-12, span, 1.0)[:, None], 0.0
    )
    trend = trend_signal(model, None, np.where(ok, ids, 0).reshape(-1)).reshape(ids.shape)
    score = (w.item_score * norm + w.trending * trend).astype(np.float32)
    score = np.where(ok, score, -np.inf)
    order = np.lexsort((ids, -score), axis=-1)
    top_ids = np.take_along_axis(ids, order, axis=1)[:, :k]
    top_ok = np.take_along_axis(ok, order, axis=1)[:, :k]
    out = np.where(top_ok, top_ids, -1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((b, k - out.shape[1]), -1, dtype=np.int64)], axis=1)
    return out


def evaluate_pipeline(
    run_dir: str | Path | FeedModel,
    variant: RankingVariant,
    train: sp.csr_matrix | None,
    test: sp.csr_matrix,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
    k: int = 20,
    ks: Sequence[int] | None = None,
    users: np.ndarray | None = None,
    batch_size: int = 512,
    progress: bool = True,
    fast: bool | None = None,
) -> dict[str, Any]:
    """Metrics of the served top-k lists for every test user.

    ``train``/``test`` are users x items matrices whose rows are ``user_ids`` and columns ``item_ids``
    (external ids; None ⇒ the run's own row order). ``fast=None`` picks the vectorised path when the
    run has no world tables. Returns the metrics plus ``n_users``, ``path`` and ``variant``."""
    model = run_dir if isinstance(run_dir, FeedModel) else FeedModel.load(run_dir)
    test = sp.csr_matrix(test)
    train_csr = sp.csr_matrix(train) if train is not None else None
    if train_csr is not None and train_csr.shape != test.shape:
        raise PipelineEvalError(f"train shape {train_csr.shape} != test shape {test.shape}")
    ks = sorted(set(ks or [k]))
    kmax = max(ks)
    col_to_row, row_to_col = _column_maps(model, test.shape[1], item_ids)
    if user_ids is None:
        if test.shape[0] != len(model.users):
            raise PipelineEvalError(
                f"test matrix has {test.shape[0]} user rows but the run has {len(model.users)} users; "
                "pass user_ids"
            )
        ext_users = model.users.ids
    else:
        if len(user_ids) != test.shape[0]:
            raise PipelineEvalError(f"{len(user_ids)} user ids for {test.shape[0]} matrix rows")
        ext_users = np.asarray(user_ids, dtype=np.int64)
    candidates = np.arange(test.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    eval_users = candidates[np.diff(test.indptr)[candidates] > 0]
    use_fast = (not model.has_world) if fast is None else fast
    if use_fast and model.has_world:
        raise PipelineEvalError(
            "the vectorised path only reproduces the ranker for runs without world tables"
        )
    ranker = FeedRanker(model, search_threads=None)  # batch searches here profit from all cores

    starts = range(0, len(eval_users), batch_size)
    if progress:
        from recsys.progress import progress as progress_bar

        starts = progress_bar(starts, desc="pipeline eval", unit="batch")  # type: ignore[assignment]
    tops: list[np.ndarray] = []
    for s in starts:
        batch = eval_users[s : s + batch_size]
        urows = model.users.rows(ext_users[batch])
        seen = [_seen_rows(train_csr, int(u), col_to_row) for u in batch]
        if use_fast:
            top_rows = topk_fast(model, variant, urows, seen, kmax)
        else:
            top_rows = _topk_slow(model, ranker, variant, ext_users[batch], urows, seen, kmax)
        tops.append(np.where(top_rows >= 0, row_to_col[np.maximum(top_rows, 0)], -1))
    top = np.concatenate(tops) if tops else np.zeros((0, kmax), dtype=np.int64)
    metrics: dict[str, Any] = dict(evaluate_topk(top, test, users=eval_users, ks=ks))
    metrics.update(
        {"n_users": len(eval_users), "path": "fast" if use_fast else "ranker", "variant": variant.name}
    )
    return metrics


def _topk_slow(
    model: FeedModel,
    ranker: FeedRanker,
    variant: RankingVariant,
    ext_users: np.ndarray,
    urows: np.ndarray,
    seen: list[np.ndarray],
    k: int,
) -> np.ndarray:
    """Per-user ``rank()`` with the batch's ANN searches done in one FAISS call."""
    cc = variant.candidates
    extra = np.array([min(len(s), MAX_EXTRA_ANN) for s in seen], dtype=np.int64)
    ann_w = min(model.n_items, cc.ann_k + int(extra.max(initial=0)))
    known = urows >= 0
    ann_s = ann_i = None
    if cc.ann_k > 0 and known.any():
        ann_s, ann_i = search(model.index, model.user_emb[urows[known]], ann_w)
    out = np.full((len(ext_users), k), -1, dtype=np.int64)
    j = 0
    for i, (uid, s) in enumerate(zip(ext_users.tolist(), seen, strict=True)):
        ann = None
        if known[i] and ann_s is not None and ann_i is not None:
            width = min(model.n_items, cc.ann_k + int(extra[i]))
            ann = (ann_s[j, :width], ann_i[j, :width])
            j += 1
        ctx = UserContext(
            user_id=int(uid),
            recent_items=[],
            seen=set(model.items.ids[s].tolist()),
            bought=set(),
            hidden_items=set(),
            hidden_kols=set(),
            live_kol_affinity={},
        )
        entries = ranker.rank(ctx, variant, k, ann=ann)
        rows = model.items.rows([e.item_id for e in entries])
        out[i, : len(rows)] = rows
    return out

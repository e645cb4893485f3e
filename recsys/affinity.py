"""KOL embeddings and the user→KOL affinity table that ranking mixes into item scores.

Why: social commerce sells trust. A user's affinity to a creator combines what they said (follows),
what they did (recency-decayed engagement through the creator's posts, hides subtract), what their
friends did (purchases through that creator: social proof) and taste (embedding similarity between
the user and what the creator posts). Everything is vectorised; the result is a sparse top-N per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class AffinityWeights:
    follow: float = 2.0
    engagement: float = 1.0
    friends_bought: float = 0.5
    similarity: float = 0.5


def kol_embeddings(
    item_emb: np.ndarray,
    post_kol: np.ndarray,
    post_item: np.ndarray,
    n_kols: int,
    post_engagement: np.ndarray | None = None,
) -> np.ndarray:
    """Row k = weighted mean of the item embeddings of the items KOL k posted, with weight
    ``1 + engagement`` per post (so unengaged posts still count). KOLs without posts get zeros.

    ``post_kol``/``post_item`` are dense indices (one entry per post)."""
    d = item_emb.shape[1]
    if len(post_kol) == 0:
        return np.zeros((n_kols, d), dtype=np.float32)
    w = np.ones(len(post_kol), dtype=np.float64)
    if post_engagement is not None:
        w = w + np.maximum(np.asarray(post_engagement, dtype=np.float64), 0.0)
    m = sp.csr_matrix((w, (post_kol, post_item)), shape=(n_kols, item_emb.shape[0]))
    sums = np.asarray(m.sum(axis=1)).ravel()
    emb = np.asarray(m @ item_emb.astype(np.float64))
    emb /= np.maximum(sums, 1e-12)[:, None]
    return emb.astype(np.float32)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _signed_log1p(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.tocsr(copy=True).astype(np.float64)
    out.data = np.sign(out.data) * np.log1p(np.abs(out.data))
    return out


def affinity_top_n(
    follows: sp.csr_matrix,
    engagement: sp.csr_matrix,
    friend_buys: sp.csr_matrix,
    user_emb: np.ndarray | None,
    kol_emb: np.ndarray | None,
    weights: AffinityWeights = AffinityWeights(),
    top_n: int = 50,
    batch_size: int = 4096,
) -> sp.csr_matrix:
    """Users x KOLs sparse matrix holding each user's top-``top_n`` positive affinities.

    score = follow·[follows] + engagement·slog1p(engagement) + friends_bought·log1p(friend buys via KOL)
            + similarity·cos(user_emb, kol_emb)

    ``friend_buys`` is users x KOLs: how many buys the user's friends made through each KOL
    (``friends @ buys_via_kol``). Only positive scores are kept."""
    n_users, n_kols = follows.shape
    if engagement.shape != (n_users, n_kols) or friend_buys.shape != (n_users, n_kols):
        raise ValueError("follows, engagement and friend_buys must all be users x KOLs")
    signal = (
        weights.follow * (follows.astype(np.float64) > 0).astype(np.float64)
        + weights.engagement * _signed_log1p(engagement)
        + weights.friends_bought * _signed_log1p(friend_buys)
    ).tocsr()
    use_sim = user_emb is not None and kol_emb is not None and weights.similarity != 0 and n_kols > 0
    if use_sim:
        assert user_emb is not None and kol_emb is not None
        u_norm = _normalise_rows(user_emb.astype(np.float32))
        k_norm = _normalise_rows(kol_emb.astype(np.float32))
    n = min(top_n, n_kols)
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        block = signal[start:stop].toarray()
        if use_sim:
            block += weights.similarity * (u_norm[start:stop] @ k_norm.T)
        if n == 0:
            continue
        if n < n_kols:
            top = np.argpartition(-block, n - 1, axis=1)[:, :n]
        else:
            top = np.tile(np.arange(n_kols), (stop - start, 1))
        vals = np.take_along_axis(block, top, axis=1)
        keep = vals > 0
        rows_out.append((np.arange(start, stop)[:, None] + np.zeros_like(top))[keep])
        cols_out.append(top[keep])
        vals_out.append(vals[keep])
    if not rows_out:
        empty = np.zeros(0, dtype=np.int64)
        return sp.csr_matrix((np.zeros(0, dtype=np.float32), (empty, empty)), shape=(n_users, n_kols))
    return sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n_users, n_kols),
        dtype=np.float32,
    )


def friend_buys_via_kol(friends: sp.csr_matrix, buys_via_kol: sp.csr_matrix) -> sp.csr_matrix:
    """Users x KOLs: buys through each KOL made by the user's friends (friends is users x users)."""
    f = friends.tocsr(copy=True).astype(np.float32)
    f.data[:] = 1.0
    f.setdiag(0)
    f.eliminate_zeros()
    return (f @ buys_via_kol.astype(np.float32)).tocsr()

"""The static part of a world: users, creators, items, posts, follows and friendships, and the
hidden ground truth that goes with them. Fully vectorised (no per-entity Python loops) so the
largest preset builds in seconds.

Design choices worth knowing when reading the data:
- Follower *pull* (how many people follow a KOL) is drawn independently of *trust* (how well the
  KOL's recommendations convert), so follower counts are a weak predictor of sales.
- A KOL has 1–3 verticals; most posts promote items of a vertical, ``OFF_VERTICAL_RATE`` do not.
- Follows are sampled per user segment with weight pull × exp(match of segment taste and verticals).
- The friend graph is homophilous: a friendship stub lands in the same segment with
  probability ``SAME_SEGMENT_FRIEND``.
- Post ids are assigned in ``created_at`` order, so "posts published before t" is a prefix of ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.row_maps import Csr
from recsys.schema import CATEGORIES
from recsys.world import priors
from recsys.world.config import DAY, WorldConfig
from recsys.world.truth import GroundTruth, TruthParams

OFF_VERTICAL_RATE = 0.15
SAME_SEGMENT_FRIEND = 0.7
IN_STOCK_RATE = 0.95
USER_PREF_NOISE = 0.6
FOLLOW_MATCH = 1.5
N_CAT = len(CATEGORIES)


@dataclass
class StaticWorld:
    truth: GroundTruth
    user_created_at: np.ndarray
    item_brand: np.ndarray  # int brand code; name is f"{category}_brand_{code}"
    item_merchant: np.ndarray
    kol_verticals: list[str]
    post_kol: np.ndarray
    post_item: np.ndarray
    post_created_at: np.ndarray
    follow_user: np.ndarray
    follow_kol: np.ndarray
    follow_ts: np.ndarray
    friend_user: np.ndarray
    friend_friend: np.ndarray


def _gumbel_rank(rng: np.random.Generator, logw: np.ndarray) -> np.ndarray:
    """Row-wise random order without replacement with probability ∝ exp(logw) (Gumbel top-k)."""
    keys = logw + rng.gumbel(size=logw.shape)
    return np.argsort(-keys, axis=1, kind="stable")


def build_static(cfg: WorldConfig, rng: np.random.Generator, params: TruthParams) -> StaticWorld:
    n_u, n_k, n_i = cfg.n_users, cfg.n_kols, cfg.n_items
    start = cfg.start_ts

    # ---- users ----
    seg = rng.choice(len(priors.SEGMENT_NAMES), size=n_u, p=priors.segment_shares()).astype(np.int64)
    logits = priors.segment_logits()[seg] + rng.normal(0.0, USER_PREF_NOISE, size=(n_u, N_CAT))
    pref = np.exp(logits - logits.max(axis=1, keepdims=True))
    pref = (pref / pref.sum(axis=1, keepdims=True)).astype(np.float32)
    activity = (cfg.sessions_per_user_day * rng.lognormal(-0.5, 1.0, size=n_u)).astype(np.float64)
    user_created = start - rng.integers(DAY, 730 * DAY, size=n_u, dtype=np.int64)

    # ---- kols ----
    base = priors.category_base_logits()
    n_vert = rng.choice(3, size=n_k, p=[0.5, 0.35, 0.15]) + 1
    order = _gumbel_rank(rng, np.tile(base, (n_k, 1)))
    vmask = np.zeros((n_k, N_CAT), dtype=bool)
    rank_pos = np.arange(N_CAT)[None, :] < n_vert[:, None]
    np.put_along_axis(vmask, order, rank_pos, axis=1)
    fit = np.where(vmask, rng.uniform(0.7, 1.0, (n_k, N_CAT)), rng.uniform(0.1, 0.3, (n_k, N_CAT)))
    trust = rng.beta(2.0, 2.0, size=n_k)
    pull = rng.lognormal(0.0, 1.2, size=n_k)  # drawn independently of trust on purpose
    kol_verticals = ["|".join(CATEGORIES[c] for c in order[k, : n_vert[k]]) for k in range(n_k)]

    # ---- items ----
    cat_p = np.exp(base) / np.exp(base).sum()
    item_cat = rng.choice(N_CAT, size=n_i, p=cat_p).astype(np.int64)
    log_med = priors.category_log_median_price()
    price = np.round(np.exp(log_med[item_cat] + rng.normal(0.0, priors.PRICE_SIGMA, n_i)), 2)
    price = np.maximum(price, 0.5)
    ref_price = np.exp(log_med[item_cat])
    appeal = rng.normal(0.0, 1.0, size=n_i)
    in_stock = rng.random(n_i) < IN_STOCK_RATE
    n_brands = cfg.n_brands or max(N_CAT, n_i // 20)
    n_merch = cfg.n_merchants or max(1, n_brands // 3)
    brand = np.minimum(rng.zipf(1.6, size=n_i) - 1, n_brands // N_CAT).astype(np.int64)
    # A brand (category, code) belongs to one merchant.
    merchant = (item_cat * 1_000_003 + brand * 7919) % n_merch

    # ---- posts ----
    n_posts_k = 1 + rng.poisson(max(cfg.posts_per_kol - 1.0, 0.0), size=n_k)
    p_kol = np.repeat(np.arange(n_k, dtype=np.int64), n_posts_k)
    n_p = p_kol.shape[0]
    on_vert = rng.random(n_p) >= OFF_VERTICAL_RATE
    vert_pick = np.floor(rng.random(n_p) * n_vert[p_kol]).astype(np.int64)
    cat_on = order[p_kol, vert_pick]
    off_logw = np.where(vmask[p_kol], -np.inf, np.tile(base, (n_p, 1)))
    cat_off = np.argmax(off_logw + rng.gumbel(size=(n_p, N_CAT)), axis=1)
    all_vert = vmask[p_kol].all(axis=1)
    p_cat = np.where(on_vert | all_vert, cat_on, cat_off)
    by_cat = np.argsort(item_cat, kind="stable")
    cat_ptr = np.zeros(N_CAT + 1, dtype=np.int64)
    np.cumsum(np.bincount(item_cat, minlength=N_CAT), out=cat_ptr[1:])
    cat_n = cat_ptr[1:] - cat_ptr[:-1]
    # Fall back to any item if a category happens to have none (tiny catalogs).
    empty = cat_n[p_cat] == 0
    pick = cat_ptr[p_cat] + np.floor(rng.random(n_p) * np.maximum(cat_n[p_cat], 1)).astype(np.int64)
    p_item = np.where(empty, rng.integers(0, n_i, n_p), by_cat[np.minimum(pick, n_i - 1)])
    t0 = start - cfg.history_days * DAY
    p_created = rng.integers(t0, start + cfg.days * DAY, size=n_p, dtype=np.int64)
    porder = np.lexsort((p_item, p_kol, p_created))
    p_kol, p_item, p_created = p_kol[porder], p_item[porder], p_created[porder]

    # ---- follows (per segment, weighted by pull and taste match) ----
    seg_pref = priors.segment_logits()
    seg_pref = np.exp(seg_pref) / np.exp(seg_pref).sum(axis=1, keepdims=True)
    f_users, f_kols = [], []
    n_follow = rng.poisson(cfg.mean_follows, size=n_u)
    for s in range(len(priors.SEGMENT_NAMES)):
        match = np.log(N_CAT * np.where(vmask, seg_pref[s][None, :], 0.0).max(axis=1))
        w = pull * np.exp(FOLLOW_MATCH * match)
        users_s = np.flatnonzero(seg == s)
        cnt = n_follow[users_s]
        f_users.append(np.repeat(users_s, cnt))
        f_kols.append(rng.choice(n_k, size=int(cnt.sum()), p=w / w.sum()))
    fu, fk = np.concatenate(f_users), np.concatenate(f_kols).astype(np.int64)
    key = np.unique(fu * n_k + fk)
    fu, fk = key // n_k, key % n_k
    f_ts = np.asarray(start - rng.integers(1, 365 * DAY, size=fu.shape[0], dtype=np.int64))

    # ---- friends (homophilous, symmetric) ----
    stubs = rng.poisson(cfg.mean_friends / 2.0, size=n_u)
    a = np.repeat(np.arange(n_u, dtype=np.int64), stubs)
    seg_order = np.argsort(seg, kind="stable")
    seg_ptr = np.zeros(len(priors.SEGMENT_NAMES) + 1, dtype=np.int64)
    np.cumsum(np.bincount(seg, minlength=len(priors.SEGMENT_NAMES)), out=seg_ptr[1:])
    sa = seg[a]
    same = rng.random(a.shape[0]) < SAME_SEGMENT_FRIEND
    same_pick = seg_order[
        seg_ptr[sa] + np.floor(rng.random(a.shape[0]) * (seg_ptr[sa + 1] - seg_ptr[sa])).astype(np.int64)
    ]
    b = np.where(same, same_pick, rng.integers(0, n_u, a.shape[0]))
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    und = np.unique(lo * n_u + hi)
    lo, hi = und // n_u, und % n_u
    fr_u = np.concatenate([lo, hi])
    fr_f = np.concatenate([hi, lo])
    o = np.lexsort((fr_f, fr_u))
    fr_u, fr_f = fr_u[o], fr_f[o]
    friends = Csr.build(fr_u, fr_f, n_u, sort_cols=True)

    truth = GroundTruth(
        params=params,
        user_pref=pref,
        user_segment=seg,
        user_activity=activity,
        kol_trust=trust,
        kol_pull=pull,
        kol_fit=fit,
        kol_vertical_mask=vmask,
        item_category=item_cat,
        item_price=price,
        item_appeal=appeal,
        item_in_stock=in_stock,
        item_ref_price=ref_price,
        friend_indptr=friends.indptr,
        friend_indices=friends.indices,
    )
    return StaticWorld(
        truth=truth,
        user_created_at=user_created,
        item_brand=brand,
        item_merchant=merchant.astype(np.int64),
        kol_verticals=kol_verticals,
        post_kol=p_kol,
        post_item=p_item,
        post_created_at=p_created,
        follow_user=fu,
        follow_kol=fk,
        follow_ts=f_ts,
        friend_user=fr_u,
        friend_friend=fr_f,
    )

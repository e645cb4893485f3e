"""The hidden ground truth of a synthetic world and the behaviour model built on it.

Why one class for both: the generator decides every event with these functions, and the offline
simulator later decides what a simulated user does with a feed entry with the *same* functions,
so simulated outcomes and the logged data agree by construction.

Ids are dense: user ``u`` is row ``u`` of every user array, likewise items and KOLs.

Behaviour model (all probabilities are logistic in the terms listed; coefficients in ``TruthParams``):

- ``click_prob``   per impression: user's preference for the item's category, item appeal, a small
                   creator–category fit term, and a bonus when a friend shared the post.
- ``buy_prob``     given a click: KOL **trust**, KOL–category **fit** (off-vertical converts worse),
                   friends who already bought (social proof, ``log1p``), price vs the category
                   median, preference and appeal; zero when the item is out of stock.
                   Follower pull does not appear: reach is not conversion.
- ``share_prob``   given a click: trust, appeal, preference, and much higher after a buy (group buy).
- ``hide_prob``    given an impression without click: poor preference match and off-vertical posts.
- ``like_prob``/``save_prob``/``cart_prob``: intermediate actions given a click (buyers always cart).
- ``pick_share_friend``: a sharer sends the post to one uniformly chosen friend.

Files under ``DIR/truth/`` (``.npy`` loaded with ``allow_pickle=False``, plus ``params.json``):
``user_pref`` (n_users × n_categories, rows sum to 1), ``user_segment``, ``user_activity``,
``kol_trust``, ``kol_pull``, ``kol_fit`` (n_kols × n_categories), ``kol_vertical_mask``,
``item_category``, ``item_price``, ``item_appeal``, ``item_in_stock``, ``item_ref_price``
(category median price), ``friend_indptr``,
``friend_indices`` (CSR of the symmetric friend graph).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from recsys.schema import CATEGORIES
from recsys.world.config import WorldError

TRUTH_DIR = "truth"
PARAMS_FILE = "params.json"
ARRAYS: tuple[str, ...] = (
    "user_pref",
    "user_segment",
    "user_activity",
    "kol_trust",
    "kol_pull",
    "kol_fit",
    "kol_vertical_mask",
    "item_category",
    "item_price",
    "item_appeal",
    "item_in_stock",
    "item_ref_price",
    "friend_indptr",
    "friend_indices",
)


class TruthParams(BaseModel):
    """Coefficients of the behaviour model (logit scale)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    click_bias: float = -2.7
    click_pref: float = 0.9
    click_appeal: float = 0.7
    click_fit: float = 0.25
    click_from_friend: float = 1.8

    buy_bias: float = -2.6
    buy_trust: float = 4.0
    buy_fit: float = 1.0
    buy_social: float = 0.7
    buy_price: float = 0.5
    buy_pref: float = 0.4
    buy_appeal: float = 0.4

    share_bias: float = -3.0
    share_trust: float = 1.0
    share_appeal: float = 0.5
    share_pref: float = 0.3
    share_after_buy: float = 1.6

    hide_bias: float = -4.2
    hide_mismatch: float = 0.6
    hide_off_vertical: float = 0.7

    like_bias: float = -1.6
    like_appeal: float = 0.6
    like_pref: float = 0.4
    save_bias: float = -2.6
    save_pref: float = 0.4
    cart_bias: float = -2.4
    cart_trust: float = 1.0
    cart_fit: float = 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _ids(x: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.int64)
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
        raise WorldError(f"{what} id out of range [0, {n}): min {int(a.min())}, max {int(a.max())}")
    return a


@dataclass
class GroundTruth:
    """Hidden per-entity parameters plus the vectorised behaviour functions (see module docstring)."""

    params: TruthParams
    user_pref: np.ndarray
    user_segment: np.ndarray
    user_activity: np.ndarray
    kol_trust: np.ndarray
    kol_pull: np.ndarray
    kol_fit: np.ndarray
    kol_vertical_mask: np.ndarray
    item_category: np.ndarray
    item_price: np.ndarray
    item_appeal: np.ndarray
    item_in_stock: np.ndarray
    item_ref_price: np.ndarray
    friend_indptr: np.ndarray
    friend_indices: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.user_pref.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    @property
    def n_kols(self) -> int:
        return int(self.kol_trust.shape[0])

    # ---- shared terms -------------------------------------------------------------------------
    def _terms(self, user_ids: Any, item_ids: Any, kol_ids: Any) -> tuple[np.ndarray, ...]:
        """(log relative preference, log fit, item index, kol index) for aligned id arrays."""
        u = _ids(user_ids, self.n_users, "user")
        i = _ids(item_ids, self.n_items, "item")
        k = _ids(kol_ids, self.n_kols, "kol")
        if not (u.shape == i.shape == k.shape):
            raise WorldError(f"user/item/kol id arrays differ in shape: {u.shape}, {i.shape}, {k.shape}")
        cat = self.item_category[i]
        log_pref = np.log(self.user_pref[u, cat].astype(np.float64) * len(CATEGORIES))
        log_fit = np.log(self.kol_fit[k, cat].astype(np.float64))
        return log_pref, log_fit, i, k

    def is_on_vertical(self, kol_ids: Any, item_ids: Any) -> np.ndarray:
        k = _ids(kol_ids, self.n_kols, "kol")
        i = _ids(item_ids, self.n_items, "item")
        return np.asarray(self.kol_vertical_mask[k, self.item_category[i]], dtype=bool)

    # ---- behaviour ----------------------------------------------------------------------------
    def click_prob(
        self, user_ids: Any, item_ids: Any, kol_ids: Any, from_friend: np.ndarray | None = None
    ) -> np.ndarray:
        p = self.params
        log_pref, log_fit, i, _ = self._terms(user_ids, item_ids, kol_ids)
        x = (
            p.click_bias
            + p.click_pref * log_pref
            + p.click_appeal * self.item_appeal[i]
            + p.click_fit * log_fit
        )
        if from_friend is not None:
            x = x + p.click_from_friend * np.asarray(from_friend, dtype=np.float64)
        return _sigmoid(x)

    def buy_prob(self, user_ids: Any, item_ids: Any, kol_ids: Any, n_friends_bought: Any) -> np.ndarray:
        """P(buy | click). ``n_friends_bought``: friends known to have bought the item already."""
        p = self.params
        log_pref, log_fit, i, k = self._terms(user_ids, item_ids, kol_ids)
        nfb = np.asarray(n_friends_bought, dtype=np.float64)
        x = (
            p.buy_bias
            + p.buy_trust * (self.kol_trust[k] - 0.5)
            + p.buy_fit * log_fit
            + p.buy_social * np.log1p(nfb)
            - p.buy_price * np.log(self.item_price[i] / self.item_ref_price[i])
            + p.buy_pref * log_pref
            + p.buy_appeal * self.item_appeal[i]
        )
        return _sigmoid(x) * self.item_in_stock[i]

    def share_prob(
        self, user_ids: Any, item_ids: Any, kol_ids: Any, bought: np.ndarray | None = None
    ) -> np.ndarray:
        """P(share | click); ``bought`` marks clicks that ended in a buy (group-buy sharing)."""
        p = self.params
        log_pref, _, i, k = self._terms(user_ids, item_ids, kol_ids)
        x = (
            p.share_bias
            + p.share_trust * (self.kol_trust[k] - 0.5)
            + p.share_appeal * self.item_appeal[i]
            + p.share_pref * log_pref
        )
        if bought is not None:
            x = x + p.share_after_buy * np.asarray(bought, dtype=np.float64)
        return _sigmoid(x)

    def hide_prob(self, user_ids: Any, item_ids: Any, kol_ids: Any) -> np.ndarray:
        """P(hide | impression not clicked): poor matches and off-vertical promotions."""
        p = self.params
        log_pref, log_fit, _, _ = self._terms(user_ids, item_ids, kol_ids)
        x = p.hide_bias - p.hide_mismatch * log_pref - p.hide_off_vertical * log_fit
        return _sigmoid(x)

    def like_prob(self, user_ids: Any, item_ids: Any, kol_ids: Any) -> np.ndarray:
        p = self.params
        log_pref, _, i, _ = self._terms(user_ids, item_ids, kol_ids)
        return _sigmoid(p.like_bias + p.like_appeal * self.item_appeal[i] + p.like_pref * log_pref)

    def save_prob(self, user_ids: Any, item_ids: Any, kol_ids: Any) -> np.ndarray:
        p = self.params
        log_pref, _, _, _ = self._terms(user_ids, item_ids, kol_ids)
        return _sigmoid(p.save_bias + p.save_pref * log_pref)

    def cart_prob(self, user_ids: Any, item_ids: Any, kol_ids: Any) -> np.ndarray:
        """P(cart | click, no buy): abandoned carts. A buy is always preceded by a cart."""
        p = self.params
        _, log_fit, _, k = self._terms(user_ids, item_ids, kol_ids)
        return _sigmoid(p.cart_bias + p.cart_trust * (self.kol_trust[k] - 0.5) + p.cart_fit * log_fit)

    def friends(self, user_id: int) -> np.ndarray:
        u = int(_ids([user_id], self.n_users, "user")[0])
        return self.friend_indices[self.friend_indptr[u] : self.friend_indptr[u + 1]]

    def pick_share_friend(self, rng: np.random.Generator, user_ids: Any) -> np.ndarray:
        """One uniformly chosen friend per sharer; -1 for users without friends."""
        u = _ids(user_ids, self.n_users, "user")
        start = self.friend_indptr[u]
        deg = self.friend_indptr[u + 1] - start
        pick = start + np.floor(rng.random(u.shape[0]) * deg).astype(np.int64)
        has = deg > 0
        out = np.full(u.shape[0], -1, dtype=np.int64)
        out[has] = self.friend_indices[pick[has]]
        return out

    # ---- files --------------------------------------------------------------------------------
    def save(self, world_dir: str | Path) -> None:
        d = Path(world_dir) / TRUTH_DIR
        d.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            np.save(d / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {"params": self.params.model_dump(), "categories": list(CATEGORIES), "arrays": list(ARRAYS)}
        (d / PARAMS_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, world_dir: str | Path) -> GroundTruth:
        """Load from a world directory (or its ``truth/`` folder)."""
        d = Path(world_dir)
        if not (d / PARAMS_FILE).exists():
            d = d / TRUTH_DIR
        meta_path = d / PARAMS_FILE
        if not meta_path.exists():
            raise WorldError(f"no ground truth at {world_dir}: missing {TRUTH_DIR}/{PARAMS_FILE}")
        try:
            meta = json.loads(meta_path.read_text())
            params = TruthParams(**meta["params"])
        except (ValueError, KeyError, TypeError) as e:
            raise WorldError(f"{meta_path}: unreadable ground-truth parameters ({e})") from None
        if meta.get("categories") != list(CATEGORIES):
            raise WorldError(f"{meta_path}: categories differ from recsys.schema.CATEGORIES")
        arrays: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            path = d / f"{name}.npy"
            if not path.exists():
                raise WorldError(f"ground truth incomplete: missing {path}")
            try:
                arrays[name] = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise WorldError(f"{path}: not a plain .npy array ({e})") from None
        return cls(params=params, **arrays)


class SocialProof:
    """Which (user, item) pairs have bought, to count "friends who already bought" quickly.

    Keys are ``user * n_items + item`` in a sorted int64 array; ``add`` merges a batch of buys.
    """

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.keys = np.empty(0, dtype=np.int64)

    def add(self, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
        new = np.asarray(user_ids, np.int64) * self.truth.n_items + np.asarray(item_ids, np.int64)
        self.keys = np.union1d(self.keys, new)

    def count_friends_bought(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        t = self.truth
        u = np.asarray(user_ids, np.int64)
        i = np.asarray(item_ids, np.int64)
        out = np.zeros(u.shape[0], dtype=np.int64)
        if u.size == 0 or self.keys.size == 0:
            return out
        start = t.friend_indptr[u]
        deg = t.friend_indptr[u + 1] - start
        total = int(deg.sum())
        if total == 0:
            return out
        owner = np.repeat(np.arange(u.shape[0]), deg)
        offs = np.arange(total) - np.repeat(np.cumsum(deg) - deg, deg)
        friend = t.friend_indices[np.repeat(start, deg) + offs]
        key = friend * t.n_items + i[owner]
        pos = np.searchsorted(self.keys, key)
        hit = (pos < self.keys.size) & (self.keys[np.minimum(pos, self.keys.size - 1)] == key)
        return np.bincount(owner[hit], minlength=u.shape[0]).astype(np.int64)

"""The feed model's catalog, creator and social structures, built from a run's optional world tables
(items, kols, posts, follows, friends, share_edges, user_kol_affinity, kol_category_fit, buys).

Why apart from ``FeedModel``: this is the one slow step of building a model (ids to rows, Csr
graphs, per-KOL category fit), run once per load; the model class keeps what ranking reads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from recsys import artifacts as A
from recsys.row_maps import EMPTY_I64, Csr, IdMap
from recsys.schema import UNKNOWN_CATEGORY

if TYPE_CHECKING:
    from recsys.ranking.feed_model import FeedModel

log = logging.getLogger("recsys.ranking.feed_model")
"""The model's logger: its warnings stay under the name operators filter on."""


def load_world_tables(model: FeedModel, t: dict[str, dict[str, np.ndarray]], where: str) -> None:
    """Fill ``model``'s item attributes, KOL/post arrays and social graphs from ``t`` (table name →
    column → array); an absent table leaves its structures empty. ``where`` names the run in errors."""

    def cols(name: str, *needed: str) -> dict[str, np.ndarray] | None:
        table = t.get(name)
        if table is None:
            return None
        for c in needed:
            if c not in table:
                raise A.ArtifactError(f"{where}: table {name} has no column {c!r}")
        return table

    n_items = model.n_items
    items = cols("items", "item_id", "category")
    if items is not None:
        rows = model.items.rows(items["item_id"])
        ok = rows >= 0
        # an item without a known category (null, empty, the import's placeholder) keeps code -1:
        # one catch-all "category" would cap an events-only shop's page at per_category_cap items
        raw_cats = np.asarray(items["category"]).tolist()
        cats = np.array([c or UNKNOWN_CATEGORY for c in raw_cats], dtype=str)
        known_cat = ok & (cats != UNKNOWN_CATEGORY)
        model.categories = sorted(set(cats[known_cat].tolist()))
        code = {c: i for i, c in enumerate(model.categories)}
        model.item_category[rows[known_cat]] = np.array([code[c] for c in cats[known_cat]], dtype=np.int64)
        if "in_stock" in items:
            model.item_in_stock[rows[ok]] = np.asarray(items["in_stock"], dtype=bool)[ok]
        if "price" in items:
            model.item_price[rows[ok]] = np.asarray(items["price"], dtype=np.float32)[ok]

    kols = cols("kols", "kol_id")
    posts = cols("posts", "post_id", "kol_id", "item_id", "created_at")
    kol_id_parts = [EMPTY_I64]
    if kols is not None:
        kol_id_parts.append(np.asarray(kols["kol_id"], dtype=np.int64))
    if posts is not None:
        kol_id_parts.append(np.asarray(posts["kol_id"], dtype=np.int64))
    for name in ("follows", "user_kol_affinity", "kol_category_fit"):
        if name in t and "kol_id" in t[name]:
            kol_id_parts.append(np.asarray(t[name]["kol_id"], dtype=np.int64))
    model.kols = IdMap(np.unique(np.concatenate(kol_id_parts)))
    n_kols = len(model.kols)

    # creator-category fit: explicit table, else 1.0 for the KOL's declared verticals
    n_cats = len(model.categories)
    model.kol_category_fit = np.zeros((n_kols, n_cats), dtype=np.float32)
    fit = cols("kol_category_fit", "kol_id", "category", "fit")
    cat_code = {c: i for i, c in enumerate(model.categories)}
    if fit is not None:
        krows = model.kols.rows(fit["kol_id"])
        ccodes = np.array([cat_code.get(str(c), -1) for c in fit["category"]], dtype=np.int64)
        ok = (krows >= 0) & (ccodes >= 0)
        vals = np.maximum(np.asarray(fit["fit"], dtype=np.float32), 0.0)
        model.kol_category_fit[krows[ok], ccodes[ok]] = vals[ok]
        # training exports shares (rows sum to 1); rescale so each KOL's best category is 1.0
        top = model.kol_category_fit.max(axis=1, keepdims=True) if n_cats else None
        if top is not None:
            np.divide(model.kol_category_fit, top, out=model.kol_category_fit, where=top > 0)
    elif kols is not None and "verticals" in kols:
        krows = model.kols.rows(kols["kol_id"])
        for krow, verticals in zip(krows, kols["verticals"], strict=True):
            for v in str(verticals or "").split("|"):
                if v in cat_code:
                    model.kol_category_fit[krow, cat_code[v]] = 1.0

    if posts is not None:
        irows = model.items.rows(posts["item_id"])
        keep = irows >= 0
        if not keep.all():
            log.warning("%s: %d posts reference items without embeddings; ignored", where, int((~keep).sum()))
        model.post_ids = np.asarray(posts["post_id"], dtype=np.int64)[keep]
        model.post_kol = model.kols.rows(np.asarray(posts["kol_id"], dtype=np.int64)[keep])
        model.post_item = irows[keep]
        model.post_created_at = np.asarray(posts["created_at"], dtype=np.float64)[keep]
        n_posts = len(model.post_ids)
        model.reference_time = float(model.post_created_at.max()) if n_posts else 0.0
        # KOL → posts, newest first
        model.kol_posts = Csr.build(
            model.post_kol, np.arange(n_posts), n_kols, values=model.post_created_at.astype(np.float32)
        )
        # item → newest post per (item, KOL)
        order = np.lexsort((-model.post_created_at, model.post_kol, model.post_item))
        pi, pk = model.post_item[order], model.post_kol[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (pi[1:] != pi[:-1]) | (pk[1:] != pk[:-1])
        best = order[first]
        model.item_posts = Csr.build(model.post_item[best], best, n_items)
    else:
        model.kol_posts = Csr.empty(n_kols)
        model.item_posts = Csr.empty(n_items)

    # social: user ids may include users without embeddings (brand-new but with follows)
    follows = cols("follows", "user_id", "kol_id")
    friends = cols("friends", "user_id", "friend_id")
    shares = cols("share_edges", "user_id", "to_user_id")
    aff = cols("user_kol_affinity", "user_id", "kol_id", "affinity")
    buys = cols("buys", "user_id", "item_id")
    uid_parts = [EMPTY_I64]
    for table, keys in (
        (follows, ("user_id",)),
        (friends, ("user_id", "friend_id")),
        (shares, ("user_id", "to_user_id")),
        (aff, ("user_id",)),
        (buys, ("user_id",)),
    ):
        if table is not None:
            uid_parts.extend(np.asarray(table[k], dtype=np.int64) for k in keys)
    model.social_users = IdMap(np.unique(np.concatenate(uid_parts)))
    n_su = len(model.social_users)
    su = model.social_users.rows

    if follows is not None:
        model.user_follows = Csr.build(su(follows["user_id"]), model.kols.rows(follows["kol_id"]), n_su)
        model.kol_followers = np.bincount(model.kols.rows(follows["kol_id"]), minlength=n_kols).astype(
            np.int64
        )
    else:
        model.user_follows = Csr.empty(n_su)
        model.kol_followers = np.zeros(n_kols, dtype=np.int64)

    a_parts, b_parts = [EMPTY_I64], [EMPTY_I64]
    for table, ka, kb in ((friends, "user_id", "friend_id"), (shares, "user_id", "to_user_id")):
        if table is not None:
            a, b = su(table[ka]), su(table[kb])
            a_parts += [a, b]
            b_parts += [b, a]
    a_all, b_all = np.concatenate(a_parts), np.concatenate(b_parts)
    if len(a_all):
        pairs = np.unique(np.stack([a_all, b_all], axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        model.user_friends = Csr.build(pairs[:, 0], pairs[:, 1], n_su)
    else:
        model.user_friends = Csr.empty(n_su)

    if aff is not None:
        model.user_affinity = Csr.build(
            su(aff["user_id"]), model.kols.rows(aff["kol_id"]), n_su, values=aff["affinity"]
        )
    else:
        model.user_affinity = Csr.empty(n_su)

    if buys is not None:
        brow = model.items.rows(buys["item_id"])
        ok = brow >= 0
        pairs = np.unique(np.stack([su(buys["user_id"])[ok], brow[ok]], axis=1), axis=0)
        model.user_buys = Csr.build(pairs[:, 0], pairs[:, 1], n_su)
    else:
        model.user_buys = Csr.empty(n_su)

"""Small reads of the loaded FeedModel that the service needs (categories, friends).

Why here: the model stores dense rows and codes for speed; the HTTP layer speaks external ids.
These helpers are the only place that translates, so routers stay free of numpy indexing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.ranking.feed_model import FeedModel

SHORT_LOOKUP = 16
"""Up to this many ids are looked up one by one: numpy's per-call overhead dominates short lists
(an event batch is usually one event)."""


def item_categories(model: FeedModel, item_ids: Sequence[int] | np.ndarray) -> list[str | None]:
    """Category name of each item id, None when the run does not know the item or its category."""
    if len(item_ids) <= SHORT_LOOKUP:
        return [_item_category(model, int(i)) for i in item_ids]
    ids = np.asarray(item_ids, dtype=np.int64)
    if ids.size == 0:
        return []
    rows = model.items.rows(ids)
    n_codes = len(model.item_category)
    known = (rows >= 0) & (rows < n_codes)
    codes = np.where(known, model.item_category[np.where(known, rows, 0)] if n_codes else -1, -1)
    cats = model.categories
    return [cats[c] if 0 <= c < len(cats) else None for c in codes.tolist()]


def _item_category(model: FeedModel, item_id: int) -> str | None:
    row = model.items.row(item_id)
    if not 0 <= row < len(model.item_category):
        return None
    code = int(model.item_category[row])
    return model.categories[code] if 0 <= code < len(model.categories) else None


def friend_ids(model: FeedModel, user_id: int, limit: int) -> list[int]:
    """External ids of the user's friends in the run's share graph (at most ``limit``)."""
    if limit <= 0:
        return []
    row = model.social_users.row(user_id)
    if row < 0:
        return []
    friend_rows = model.user_friends.get(row)[:limit]
    return [int(x) for x in model.social_users.ids[friend_rows].tolist()]

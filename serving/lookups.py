"""Small reads of the loaded FeedModel that the service needs (categories, friends).

Why here: the model stores dense rows and codes for speed; the HTTP layer speaks external ids.
These helpers are the only place that translates, so routers stay free of numpy indexing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.ranking.feed_model import FeedModel


def item_categories(model: FeedModel, item_ids: Sequence[int]) -> list[str | None]:
    """Category name of each item id, None when the run does not know the item or its category."""
    if not item_ids:
        return []
    rows = model.items.rows(np.asarray(item_ids, dtype=np.int64))
    out: list[str | None] = []
    n_codes = len(model.item_category)
    for row in rows.tolist():
        code = int(model.item_category[row]) if 0 <= row < n_codes else -1
        out.append(model.categories[code] if 0 <= code < len(model.categories) else None)
    return out


def friend_ids(model: FeedModel, user_id: int, limit: int) -> list[int]:
    """External ids of the user's friends in the run's share graph (at most ``limit``)."""
    if limit <= 0:
        return []
    row = model.social_users.row(user_id)
    if row < 0:
        return []
    friend_rows = model.user_friends.get(row)[:limit]
    return [int(x) for x in model.social_users.ids[friend_rows].tolist()]

"""Filters: items the user must not see on this page, as one boolean mask over candidates.

Why a mask over rows (not per-item Python checks): a heavy user's ``seen`` set has thousands of
entries; mapping them to rows once (sorted) and looking candidates up with one ``searchsorted`` keeps
a request well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from recsys.ranking.context import UserContext
from recsys.ranking.feed_model import FeedModel


def excluded_rows(model: FeedModel, ctx: UserContext, exclude: Iterable[int] = ()) -> np.ndarray:
    """Sorted unique item rows the user has seen, bought or hidden, plus the caller's ``exclude``."""
    ids = {*ctx.seen, *ctx.bought, *ctx.hidden_items, *exclude}
    if not ids:
        return np.zeros(0, dtype=np.int64)
    rows = model.items.rows(list(ids))
    rows = rows[rows >= 0]
    rows.sort()
    if len(rows) > 1 and not (rows[1:] != rows[:-1]).all():  # only odd ids (5 and 5.2) share a row
        rows = np.unique(rows)
    return rows


def in_sorted(items: np.ndarray, sorted_rows: np.ndarray) -> np.ndarray:
    """``np.isin(items, sorted_rows)`` for a sorted ``sorted_rows``, without isin's sort of both sides."""
    if not len(sorted_rows) or not len(items):
        return np.zeros(len(items), dtype=bool)
    if len(sorted_rows) == 1:  # e.g. the one category the user hid
        return items == sorted_rows[0]
    pos = sorted_rows.searchsorted(items)
    np.minimum(pos, len(sorted_rows) - 1, out=pos)  # past the end: compares unequal
    return sorted_rows[pos] == items


def keep_mask(model: FeedModel, items: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """True for candidate item rows that survive: not excluded (sorted, from excluded_rows), in stock."""
    keep = model.item_in_stock[items] if len(model.item_in_stock) else np.ones(len(items), dtype=bool)
    if len(excluded):
        keep = keep & ~in_sorted(items, excluded)
    return keep


def hidden_categories(model: FeedModel, ctx: UserContext) -> np.ndarray:
    """Category codes of items the user hid (negative feedback demotes the rest of that category)."""
    if not ctx.hidden_items or not len(model.categories):
        return np.zeros(0, dtype=np.int64)
    rows = model.items.rows(list(ctx.hidden_items))
    cats = model.item_category[rows[rows >= 0]].tolist()
    return np.array(sorted({c for c in cats if c >= 0}), dtype=np.int64)

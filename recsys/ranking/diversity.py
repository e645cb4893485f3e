"""Diversity: build a page greedily in score order under per-KOL and per-category caps.

Why greedy with hard caps: "one creator must not flood a feed" is a product rule, not a soft
preference; caps hold on every page. One product appears once because candidates are unique items
(the best post was already chosen per item in scoring).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from recsys.ranking.scoring import Scored


class PageBuilder:
    """Accumulates picks while tracking per-KOL and per-category counts across several passes."""

    def __init__(self, per_kol_cap: int, per_category_cap: int, category_of: np.ndarray) -> None:
        self.per_kol_cap = per_kol_cap
        self.per_category_cap = per_category_cap
        self.category_of = category_of
        # plain dicts read with get(): a Counter's missing keys go through a Python-level __missing__
        self.kol_count: dict[int, int] = {}
        self.cat_count: dict[int, int] = {}
        self.items: set[int] = set()

    def pick(self, scored: Scored, n: int) -> list[int]:
        """Indices into ``scored`` of up to ``n`` new picks, best score first, respecting caps.

        A candidate fits when its item is not on the page yet and neither its KOL nor its category
        has reached its cap. The page usually fills from the first few dozen of hundreds of
        candidates, so only the best ``4n + 16`` are sorted first (a partition, then a stable sort of
        those: sorting all is the cost here, mostly mispredicted branches); the rest only if needed.
        Either way the visiting order is exactly a stable sort by descending score."""
        out: list[int] = []
        if n <= 0 or not len(scored.items):
            return out
        for at in _best_first(-scored.score, 4 * n + 16):
            if self._take(scored, at, n, out):
                break
        return out

    def _take(self, scored: Scored, at: np.ndarray, n: int, out: list[int]) -> bool:
        """Visit candidates ``at`` in order, appending those that fit to ``out``; True once full."""
        kol_count, cat_count, taken = self.kol_count, self.cat_count, self.items
        kol_cap, cat_cap = self.per_kol_cap, self.per_category_cap
        items = scored.items[at]
        cats = self.category_of[items].tolist() if len(self.category_of) else [-1] * len(at)
        for pos, item, kol, cat in zip(
            at.tolist(), items.tolist(), scored.kol[at].tolist(), cats, strict=True
        ):
            if item in taken or (kol >= 0 and kol_count.get(kol, 0) >= kol_cap):
                continue
            if cat >= 0 and cat_count.get(cat, 0) >= cat_cap:
                continue
            taken.add(item)
            if kol >= 0:
                kol_count[kol] = kol_count.get(kol, 0) + 1
            if cat >= 0:
                cat_count[cat] = cat_count.get(cat, 0) + 1
            out.append(pos)
            if len(out) >= n:
                return True
        return False


def _best_first(key: np.ndarray, k: int) -> Iterator[np.ndarray]:
    """``key.argsort(kind="stable")`` in pieces: the first piece holds (at least) the ``k`` smallest
    keys, later pieces are computed only when asked for. NaN keys come last, as in the full sort."""
    if len(key) <= k:
        yield key.argsort(kind="stable")
        return
    kth = np.partition(key, k - 1)[k - 1]
    if kth != kth:  # NaN: fewer than k real keys, sort them all
        yield key.argsort(kind="stable")
        return
    head = key <= kth  # ties with the k-th key included; NaN keys are not
    first = head.nonzero()[0]
    yield first[key[first].argsort(kind="stable")]
    rest = (~head).nonzero()[0]
    order = rest[key[rest].argsort(kind="stable")]
    for start in range(0, len(order), k):
        yield order[start : start + k]

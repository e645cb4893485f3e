"""Diversity: build a page greedily in score order under per-KOL and per-category caps.

Why greedy with hard caps: "one creator must not flood a feed" is a product rule, not a soft
preference; caps hold on every page. One product appears once because candidates are unique items
(the best post was already chosen per item in scoring).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from recsys.ranking.scoring import Scored


class PageBuilder:
    """Accumulates picks while tracking per-KOL and per-category counts across several passes."""

    def __init__(self, per_kol_cap: int, per_category_cap: int, category_of: np.ndarray) -> None:
        self.per_kol_cap = per_kol_cap
        self.per_category_cap = per_category_cap
        self.category_of = category_of
        self.kol_count: Counter[int] = Counter()
        self.cat_count: Counter[int] = Counter()
        self.items: set[int] = set()

    def pick(self, scored: Scored, n: int) -> list[int]:
        """Indices into ``scored`` of up to ``n`` new picks, best score first, respecting caps.

        A candidate fits when its item is not on the page yet and neither its KOL nor its category
        has reached its cap. Candidates are read in chunks of plain Python values (the page usually
        fills from the first few dozen of hundreds, so converting them all would be wasted)."""
        out: list[int] = []
        if n <= 0 or not len(scored.items):
            return out
        order = (-scored.score).argsort(kind="stable")
        kol_count, cat_count, taken = self.kol_count, self.cat_count, self.items
        kol_cap, cat_cap = self.per_kol_cap, self.per_category_cap
        chunk = 4 * n + 16
        for start in range(0, len(order), chunk):
            at = order[start : start + chunk]
            items = scored.items[at]
            cats = self.category_of[items].tolist() if len(self.category_of) else [-1] * len(at)
            kols = scored.kol[at].tolist()
            for pos, item, kol, cat in zip(at.tolist(), items.tolist(), kols, cats, strict=True):
                if item in taken or (kol >= 0 and kol_count[kol] >= kol_cap):
                    continue
                if cat >= 0 and cat_count[cat] >= cat_cap:
                    continue
                taken.add(item)
                if kol >= 0:
                    kol_count[kol] += 1
                if cat >= 0:
                    cat_count[cat] += 1
                out.append(pos)
                if len(out) >= n:
                    return out
        return out

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

    def fits(self, item: int, kol: int) -> bool:
        if item in self.items:
            return False
        if kol >= 0 and self.kol_count[kol] >= self.per_kol_cap:
            return False
        cat = int(self.category_of[item]) if len(self.category_of) else -1
        return not (cat >= 0 and self.cat_count[cat] >= self.per_category_cap)

    def add(self, item: int, kol: int) -> None:
        self.items.add(item)
        if kol >= 0:
            self.kol_count[kol] += 1
        cat = int(self.category_of[item]) if len(self.category_of) else -1
        if cat >= 0:
            self.cat_count[cat] += 1

    def pick(self, scored: Scored, n: int) -> list[int]:
        """Indices into ``scored`` of up to ``n`` new picks, best score first, respecting caps."""
        out: list[int] = []
        if n <= 0 or not len(scored.items):
            return out
        order = np.argsort(-scored.score, kind="stable")
        items = scored.items[order].tolist()
        kols = scored.kol[order].tolist()
        for pos, item, kol in zip(order.tolist(), items, kols, strict=True):
            if self.fits(item, kol):
                self.add(item, kol)
                out.append(pos)
                if len(out) >= n:
                    break
        return out

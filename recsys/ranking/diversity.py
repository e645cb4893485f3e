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

    def _category(self, item: int) -> int:
        return int(self.category_of[item]) if len(self.category_of) else -1

    def fits(self, item: int, kol: int, cat: int | None = None) -> bool:
        """``cat`` = the item's category when the caller already has it (else looked up)."""
        if item in self.items:
            return False
        if kol >= 0 and self.kol_count[kol] >= self.per_kol_cap:
            return False
        if cat is None:
            cat = self._category(item)
        return not (cat >= 0 and self.cat_count[cat] >= self.per_category_cap)

    def add(self, item: int, kol: int, cat: int | None = None) -> None:
        self.items.add(item)
        if kol >= 0:
            self.kol_count[kol] += 1
        if cat is None:
            cat = self._category(item)
        if cat >= 0:
            self.cat_count[cat] += 1

    def pick(self, scored: Scored, n: int) -> list[int]:
        """Indices into ``scored`` of up to ``n`` new picks, best score first, respecting caps.

        Candidates are read in chunks of plain Python values (the page usually fills from the first
        few dozen of hundreds, so converting them all would be wasted)."""
        out: list[int] = []
        if n <= 0 or not len(scored.items):
            return out
        order = np.argsort(-scored.score, kind="stable")
        chunk = 4 * n + 16
        for start in range(0, len(order), chunk):
            at = order[start : start + chunk]
            items = scored.items[at]
            cats = self.category_of[items].tolist() if len(self.category_of) else [-1] * len(at)
            for pos, item, kol, cat in zip(
                at.tolist(), items.tolist(), scored.kol[at].tolist(), cats, strict=True
            ):
                if self.fits(item, kol, cat):
                    self.add(item, kol, cat)
                    out.append(pos)
                    if len(out) >= n:
                        return out
        return out

"""What scoring reads of an item's posts, bit-packed into int64 rows so one row gather replaces several
scattered lookups (a cache miss per item instead of four per post).

Why a module of its own: the layout (int32 halves, float bits in int64 columns) is the only place
the ranker reinterprets memory; the packing and the reading that must agree with it stand side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.row_maps import Csr


@dataclass(frozen=True)
class PackedPostFacts:
    """Per item row and per ``item_posts`` entry, the facts scoring reads, side by side."""

    item_facts: np.ndarray
    """(n_items, 2) int64 per item row: where its ``item_posts`` start, then how many there are and
    its category as two int32 halves of the second column."""
    entry_facts: np.ndarray
    """(n_entries, 3) int64 per ``item_posts`` entry, in entry order: post index, post time (float64
    bits), then KOL row and fit as int32 and float32 halves of the third column. An item's posts are
    adjacent here, while their indices point all over the per-post arrays."""

    @classmethod
    def build(
        cls,
        item_posts: Csr,
        item_category: np.ndarray,
        n_items: int,
        post_created_at: np.ndarray,
        post_kol: np.ndarray,
        post_fit: np.ndarray,
    ) -> PackedPostFacts:
        item_facts = np.zeros((n_items, 2), dtype=np.int64)
        halves = item_facts[:, 1:].view(np.int32)  # the second column as two int32 halves
        indptr = item_posts.indptr
        if len(indptr) == n_items + 1:
            item_facts[:, 0] = indptr[:-1]
            halves[:, 0] = np.diff(indptr)
        halves[:, 1] = item_category if len(item_category) == n_items else -1
        posts = item_posts.indices
        facts = np.zeros((len(posts), 3), dtype=np.int64)
        if len(posts):
            facts[:, 0] = posts
            facts[:, 1] = post_created_at[posts].view(np.int64)
            kol_fit = facts[:, 2:].view(np.int32)  # the third column as two int32 halves
            kol_fit[:, 0] = post_kol[posts]
            kol_fit[:, 1] = post_fit[posts].view(np.int32)
        return cls(item_facts, facts)

    def item_posts_and_category(
        self, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(owner position in ``items``, ``item_posts`` entry index, posts per item as int32) of all the
        posts of ``items``, plus each item's category (int32), from one row gather of per-item facts.
        ``items`` must be valid rows."""
        rows = self.item_facts.take(items, axis=0)
        halves = rows[:, 1:].view(np.int32)
        owner, entries = Csr.expand(rows[:, 0], halves[:, 0])
        return owner, entries, halves[:, 0], halves[:, 1]

    def item_post_facts(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(post index, KOL row, fit, post time) of ``item_posts`` entries; equal to ``indices[entries]``
        and the per-post arrays at those posts (KOL rows as int32). Views into one gathered block."""
        rows = self.entry_facts.take(entries, axis=0)  # take: twice as fast as [] for 2-D rows
        kol_fit = rows[:, 2:].view(np.int32)
        return rows[:, 0], kol_fit[:, 0], kol_fit[:, 1].view(np.float32), rows[:, 1].view(np.float64)

"""What the service knows about a user at request time, and what one feed slot carries back.

Plain dataclasses so the serving layer (which fills ``UserContext`` from its feature store) and the
offline evaluator build them the same way; the ranker never touches a store itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UserContext:
    user_id: int
    recent_items: list[int] = field(default_factory=list)
    """Newest first: clicks/shares/buys the service saw recently (drives 'similar to items you liked')."""
    seen: set[int] = field(default_factory=set)
    bought: set[int] = field(default_factory=set)
    hidden_items: set[int] = field(default_factory=set)
    hidden_kols: set[int] = field(default_factory=set)
    live_kol_affinity: dict[int, float] = field(default_factory=dict)
    """Live, time-decayed engagement per KOL (negative after hides)."""


@dataclass
class FeedEntry:
    item_id: int
    post_id: int | None
    kol_id: int | None
    score: float
    reasons: list[str]
    source: str
    """The item's main candidate source: followed_kol, kol_affinity, friends_bought, ann, similar,
    trending, explore or popular (cold-start backfill)."""

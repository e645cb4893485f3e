"""Human-readable reasons for a feed entry, strongest signal first.

Why: trust is the product — "2 friends bought this" or "because you follow @kol_12" tells the
shopper why a creator's post is here, and lets ops audit the ranker. Each reason is emitted only
when its condition holds (tests check each one).
"""

from __future__ import annotations

from collections.abc import Mapping

from recsys.ranking import candidates as C
from recsys.ranking.variants import RankingVariant

AFFINITY_REASON_THRESHOLD = 0.3
"""Squashed affinity above which an unfollowed KOL earns 'you often engage with @kol'."""


SIMILAR_REASON_THRESHOLD = 0.5
"""Normalised model score above which an ANN candidate earns 'similar to items you liked'."""


def kol_handle(kol_id: int, labels: Mapping[int, str] | None = None) -> str:
    """``@`` + the creator's own id when the shop's ids are strings (``@glow_with_mia``); integer
    ids read ``@kol_12`` (a bare ``@12`` does not read as a creator)."""
    label = labels.get(kol_id) if labels else None
    return f"@{label}" if label is not None else f"@kol_{kol_id}"


def reasons_for(
    variant: RankingVariant,
    sources: int,
    kol_id: int | None,
    followed: bool,
    kol_affinity: float,
    friends: int,
    item_part: float,
    trend: float,
    category: str | None,
    explore: bool,
    kol_labels: Mapping[int, str] | None = None,
) -> list[str]:
    """Reasons for one entry. A creator is named only when the entry has one (``kol_id`` is a KOL of
    the run): a run without creators (an events-only shop) never mentions one."""
    w = variant.weights
    ranked: list[tuple[float, str]] = []
    if explore:
        ranked.append((float("inf"), "new creator for you"))
    if kol_id is not None and followed:
        ranked.append(
            (
                w.kol_affinity * max(kol_affinity, 0.0) + 1e-3,
                f"because you follow {kol_handle(kol_id, kol_labels)}",
            )
        )
    elif kol_id is not None and kol_affinity >= AFFINITY_REASON_THRESHOLD:
        ranked.append(
            (w.kol_affinity * kol_affinity, f"you often engage with {kol_handle(kol_id, kol_labels)}")
        )
    if friends > 0:
        text = "1 friend bought this" if friends == 1 else f"{friends} friends bought this"
        ranked.append((w.trust * friends / (1.0 + friends) + 1e-3, text))
    if sources & (C.ANN | C.SIMILAR) and item_part >= SIMILAR_REASON_THRESHOLD:
        ranked.append((w.item_score * item_part, "similar to items you liked"))
    if sources & C.TRENDING:
        ranked.append((w.trending * trend, f"trending in {category}" if category else "trending now"))
    if not ranked:
        ranked.append((0.0, "popular right now" if sources & C.POPULAR else "picked for you"))
    if len(ranked) > 1:
        ranked.sort(key=lambda t: -t[0])
    return [text for _, text in ranked]

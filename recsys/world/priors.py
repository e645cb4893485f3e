"""Domain priors of the synthetic world, written down once: who the shoppers are, what they like,
what things cost. Numbers follow DESIGN.md's domain facts (young women and mothers dominate;
mother & baby, beauty, home, food, apparel lead) and are otherwise plausible round figures.
"""

from __future__ import annotations

import numpy as np

from recsys.schema import CATEGORIES

# Base popularity (log-odds) of each category across everyone; leading five first, as in CATEGORIES.
CATEGORY_BASE_LOGIT: dict[str, float] = {
    "mother_baby": 1.0,
    "beauty": 1.0,
    "home": 0.8,
    "food": 0.8,
    "apparel": 0.8,
    "health": 0.0,
    "electronics": 0.0,
    "sports": 0.0,
    "pets": -0.3,
    "books": -0.3,
    "music": -0.5,
    "travel": -0.5,
}

# Median price per category (currency units); prices are lognormal around it.
CATEGORY_MEDIAN_PRICE: dict[str, float] = {
    "mother_baby": 45.0,
    "beauty": 30.0,
    "home": 60.0,
    "food": 15.0,
    "apparel": 40.0,
    "health": 35.0,
    "electronics": 200.0,
    "sports": 70.0,
    "pets": 25.0,
    "books": 18.0,
    "music": 25.0,
    "travel": 300.0,
}
PRICE_SIGMA = 0.6

# Segment -> (share of users, preference bonus per category on top of the base logits).
SEGMENTS: dict[str, tuple[float, dict[str, float]]] = {
    "young_women": (0.30, {"beauty": 1.6, "apparel": 1.3, "food": 0.3, "travel": 0.5, "mother_baby": -1.0}),
    "mothers": (0.25, {"mother_baby": 2.6, "home": 0.8, "food": 0.5, "health": 0.5}),
    "students": (0.15, {"electronics": 1.0, "books": 1.0, "music": 1.0, "food": 0.5, "mother_baby": -2.0}),
    "men": (0.12, {"electronics": 1.8, "sports": 1.5, "beauty": -1.0, "mother_baby": -1.5}),
    "professionals": (0.12, {"home": 0.8, "travel": 1.0, "health": 0.6, "electronics": 0.5}),
    "seniors": (0.06, {"health": 1.5, "home": 0.8, "food": 0.8, "books": 0.5, "pets": 0.5}),
}
SEGMENT_NAMES: tuple[str, ...] = tuple(SEGMENTS)


def category_base_logits() -> np.ndarray:
    return np.array([CATEGORY_BASE_LOGIT[c] for c in CATEGORIES], dtype=np.float64)


def segment_shares() -> np.ndarray:
    shares = np.array([SEGMENTS[s][0] for s in SEGMENT_NAMES], dtype=np.float64)
    return shares / shares.sum()


def segment_logits() -> np.ndarray:
    """(n_segments, n_categories) preference logits before per-user noise."""
    base = category_base_logits()
    out = np.tile(base, (len(SEGMENT_NAMES), 1))
    for s, name in enumerate(SEGMENT_NAMES):
        for cat, bonus in SEGMENTS[name][1].items():
            out[s, CATEGORIES.index(cat)] += bonus
    return out


def category_log_median_price() -> np.ndarray:
    return np.log(np.array([CATEGORY_MEDIAN_PRICE[c] for c in CATEGORIES], dtype=np.float64))

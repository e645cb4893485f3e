"""Small array helpers of the ranker: ``squash`` (affinities to (-1, 1)) and ``run_starts`` (where
each run of equal values begins). Vectorised numpy, shared by candidates, scoring and the feed."""

from __future__ import annotations

import numpy as np


def squash(x: np.ndarray) -> np.ndarray:
    """Map an unbounded affinity to (-1, 1): x / (1 + |x|); NaN counts as 0, ±inf as ±1e6."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():  # nan_to_num's own checks cost more than this on short arrays
        x = np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
    return x / (1.0 + np.abs(x))


def run_starts(ordered: np.ndarray) -> np.ndarray:
    """True at the first element of each run of equal values of ``ordered`` (e.g. sorted rows)."""
    first = np.empty(len(ordered), dtype=bool)
    if len(ordered):
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return first

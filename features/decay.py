"""Time-decayed counters that both backends can keep with plain additions (no read-modify-write).

We use the exponential-decay trick: an action of weight ``w`` at time ``t`` is stored as
``w * 2**((t - T) / h)`` relative to an anchor ``T`` (``h`` = half-life). Scores stored against the
same anchor compare like decayed scores and add up with a plain ``ZINCRBY``; reading at ``now``
multiplies by ``2**((T - now) / h)``.

A single fixed anchor would overflow a float after ~1000 half-lives, so time is cut into
*generations* of ``SPAN`` half-lives with anchor ``T_g = g * SPAN * h``. Each contribution is added to
the key of its own generation ``g`` and of the next one ``g + 1`` (exponent in ``[-SPAN, SPAN)``); a
reader at ``now`` reads only the key of ``g(now)``, which then holds everything from the previous and
the current generation. Anything older has decayed by more than ``2**-SPAN`` and is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPAN = 64
"""Half-lives per generation: stored factors stay within 2**±64, far from float limits."""


@dataclass(frozen=True)
class DecayClock:
    half_life_s: float

    @property
    def generation_s(self) -> float:
        return SPAN * self.half_life_s

    def generation(self, ts: float) -> int:
        return math.floor(ts / self.generation_s)

    def anchor(self, gen: int) -> float:
        return gen * self.generation_s

    def contributions(self, ts: float, weight: float) -> tuple[tuple[int, float], tuple[int, float]]:
        """(generation, scaled weight) for the two keys an action at ``ts`` is added to."""
        g = self.generation(ts)
        return (
            (g, weight * 2.0 ** ((ts - self.anchor(g)) / self.half_life_s)),
            (g + 1, weight * 2.0 ** ((ts - self.anchor(g + 1)) / self.half_life_s)),
        )

    def reader(self, now: float) -> tuple[int, float]:
        """(generation to read, factor turning its stored scores into scores decayed to ``now``)."""
        g = self.generation(now)
        return g, 2.0 ** ((self.anchor(g) - now) / self.half_life_s)

    def decay(self, weight: float, age_s: float) -> float:
        """Reference formula (for tests): ``weight`` after ``age_s`` seconds."""
        return weight * 2.0 ** (-age_s / self.half_life_s)

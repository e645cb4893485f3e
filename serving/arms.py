"""Which ranking variant (experiment arm) a user gets.

Why its own module: the experiments engineer replaces this one function with deterministic, sticky
A/B assignment; the feed router only calls ``choose_arm`` and knows nothing about experiments.
"""

from __future__ import annotations

from recsys.ranking.variants import DEFAULT_VARIANT_NAME


def choose_arm(user_id: int, default_arm: str = DEFAULT_VARIANT_NAME) -> str:
    """Until an experiment is configured every user is in the default arm."""
    del user_id
    return default_arm

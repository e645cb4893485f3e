"""Sizes of a synthetic world: one typed config and four named scale presets.

Why a config separate from the ground-truth parameters: scale decides *how much* is generated
(users, days, sessions), the truth parameters decide *how people behave*; tests change the first
to get statistically safe sample sizes without touching behaviour.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

GENERATOR_VERSION = "1"
DAY = 86_400


class WorldError(ValueError):
    """Bad world configuration, or a world directory that is missing or inconsistent."""


class WorldConfig(BaseModel):
    """How much world to generate. Every field has a preset per scale (see ``SCALES``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_users: int = Field(gt=0)
    n_kols: int = Field(gt=0)
    n_items: int = Field(gt=0)
    n_brands: int = Field(default=0, ge=0, description="0 = derived from n_items")
    n_merchants: int = Field(default=0, ge=0, description="0 = derived from n_brands")
    days: int = Field(gt=0, description="days of events")
    history_days: int = Field(default=30, ge=1, description="days of posts before the first event")
    start_ts: int = Field(default=1_704_067_200, description="unix seconds of the first event day (UTC)")
    sessions_per_user_day: float = Field(gt=0, description="mean feed sessions per user per day")
    min_impressions: int = Field(default=6, gt=0)
    max_impressions: int = Field(default=14, gt=0)
    posts_per_kol: float = Field(default=20.0, gt=0)
    mean_follows: float = Field(default=8.0, ge=0)
    mean_friends: float = Field(default=6.0, ge=0)
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="last fraction of days in test")
    max_share_depth: int = Field(default=12, ge=0, description="hops a share cascade may take")


SCALES: dict[str, WorldConfig] = {
    # ~1k users, some tens of thousands of events: seconds, for tests and demos.
    "tiny": WorldConfig(
        n_users=1_000, n_kols=60, n_items=1_500, days=14, sessions_per_user_day=0.5, posts_per_kol=12
    ),
    # ~1M events: the benchmark scale, must run in well under a minute on 2 cores.
    "small": WorldConfig(n_users=25_000, n_kols=600, n_items=20_000, days=30, sessions_per_user_day=0.13),
    # tens of millions of events, generated day by day with bounded memory.
    "medium": WorldConfig(
        n_users=250_000, n_kols=4_000, n_items=150_000, days=60, sessions_per_user_day=0.15
    ),
    "large": WorldConfig(
        n_users=1_000_000, n_kols=15_000, n_items=500_000, days=90, sessions_per_user_day=0.07
    ),
}


def scale_config(scale: str, overrides: dict[str, Any] | None = None) -> WorldConfig:
    """The preset for ``scale`` with ``overrides`` applied; unknown scales or keys raise WorldError."""
    try:
        base = SCALES[scale]
    except KeyError:
        raise WorldError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}") from None
    if not overrides:
        return base
    data = base.model_dump()
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise WorldError(f"unknown world config key {unknown[0]!r}; expected one of {', '.join(data)}")
    data.update(overrides)
    try:
        cfg = WorldConfig(**data)
    except ValidationError as e:
        first = e.errors()[0]
        raise WorldError(f"world config key {'.'.join(map(str, first['loc']))!r}: {first['msg']}") from None
    if cfg.min_impressions > cfg.max_impressions:
        raise WorldError("world config: min_impressions must be <= max_impressions")
    return cfg

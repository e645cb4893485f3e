"""The simulation's knobs as one typed config (unknown keys are rejected by name).

Why separate from the world config: the world fixes *who* people are and how they behave; these knobs
fix how much of that world is driven through the ranker (users, days, sessions, page size).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SimulationError(ValueError):
    """Bad simulation input (config, world, run or experiment); the message is one line."""


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(2000, gt=0, description="simulated users sampled from the world")
    days: int = Field(3, gt=0, description="simulated days")
    seed: int = Field(0, description="seeds the user sample, sessions and every reaction")
    sessions_per_day: float = Field(
        2.0,
        gt=0,
        description="mean feed sessions per user per day, scaled by the user's relative world activity",
    )
    use_world_activity: bool = Field(
        False, description="use the world's own sessions per user-day (usually far fewer) instead"
    )
    feed_size: int = Field(20, gt=0, le=200, description="entries requested per feed (the page size)")
    min_views: int = Field(6, gt=0, description="fewest entries a user scrolls through per session")
    max_views: int = Field(14, gt=0, description="most entries a user scrolls through per session")
    sample: Literal["cluster", "random"] = Field(
        "cluster", description="cluster: grow the sample along friendships so shares reach simulated friends"
    )
    share_delay_mean_s: float = Field(
        7_200.0, ge=0, description="mean delay before a share reaches the friend"
    )
    batch_size: int = Field(256, gt=0, description="sessions ranked between two store writes (at most)")
    batch_seconds: int = Field(3_600, gt=0, description="a batch never spans more than this much time")
    warm_store: bool = Field(True, description="replay the sampled users' world events into the store first")
    trending_k: int = Field(50, ge=0, description="trending items read per batch (as the service does)")
    friends_limit: int = Field(50, ge=0, description="friends counted for live social proof (as the service)")


def sim_config(**values: Any) -> SimConfig:
    """A SimConfig from keyword values; a bad key or value raises SimulationError naming it."""
    try:
        cfg = SimConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise SimulationError(f"simulation config {key!r}: {msg}") from None
    if cfg.min_views > cfg.max_views:
        raise SimulationError("simulation config: min_views must be <= max_views")
    return cfg

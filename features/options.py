"""Tuning knobs shared by every backend, validated once (unknown keys are rejected by name).

Options come from keyword arguments of ``open_store`` and from the URL query string
(``redis://host:6379/0?prefix=kf:test:``); keyword arguments win.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import StoreConfigError

DAY_S = 86_400.0


class StoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="kf:", min_length=1, description="namespace of every key this store writes")
    recent_limit: int = Field(
        default=200, gt=0, description="length of recent_clicks / recent_shares / recent_buys"
    )
    seen_limit: int = Field(
        default=500, gt=0, description="distinct items remembered as seen (latest impressions)"
    )
    bought_limit: int = Field(default=1000, gt=0, description="distinct bought items remembered")
    hidden_limit: int = Field(
        default=1000, gt=0, description="distinct hidden items / hidden KOLs remembered"
    )
    affinity_kol_limit: int = Field(default=200, gt=0, description="KOLs per user with a live affinity")
    trending_limit: int = Field(default=10_000, gt=0, description="items kept per trending key")
    trending_shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="partitions of the trending sets (item % N), spread over a cluster's nodes; "
        "redis+cluster:// defaults to 16, other stores to 1",
    )
    user_ttl_s: int = Field(
        default=30 * 86_400, gt=0, description="per-user keys expire after this much inactivity"
    )
    affinity_half_life_s: float = Field(default=7 * DAY_S, gt=0)
    trending_half_life_s: float = Field(default=DAY_S, gt=0)
    # Redis connection (ignored by memory://).
    max_connections: int = Field(default=32, gt=0)
    socket_timeout: float = Field(default=0.1, gt=0, description="seconds to wait for a reply")
    socket_connect_timeout: float = Field(default=0.1, gt=0, description="seconds to wait for a TCP connect")
    pool_timeout: float = Field(default=0.1, gt=0, description="seconds to wait for a free pooled connection")
    retries: int = Field(default=1, ge=0, description="immediate retries on a dropped connection")


def parse_options(raw: dict[str, Any], where: str) -> StoreOptions:
    """Validate option values, naming the offending key (and never echoing a URL password)."""
    try:
        return StoreOptions(**raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        known = ", ".join(StoreOptions.model_fields)
        raise StoreConfigError(
            f"bad store option for {where}: {'; '.join(problems)} (known: {known})"
        ) from None

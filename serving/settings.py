"""Service configuration from ``KOLFEED_*`` environment variables (pydantic-settings).

Why one typed object: every knob an operator can turn is listed here with its default, a typo'd
keyword fails loudly, and tests build a ``Settings(...)`` directly instead of patching the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.ranking.variants import DEFAULT_VARIANT_NAME, DEFAULT_VARIANTS_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOLFEED_", extra="forbid")

    run_dir: Path | None = Field(None, description="run directory to serve; default: newest under runs_root")
    runs_root: Path = Field(Path("runs"), description="admin reload only accepts run dirs under this root")
    store_url: SecretStr = Field(
        SecretStr("memory://"), description="memory:// or redis://...; may hold a password"
    )
    admin_token: SecretStr | None = Field(None, description="bearer token for /v1/admin/*; unset = disabled")
    ranking_dir: Path = Field(Path(DEFAULT_VARIANTS_DIR), description="directory of ranking-variant YAMLs")
    default_variant: str = Field(DEFAULT_VARIANT_NAME, min_length=1, description="arm without experiment")
    dev_mode: bool = Field(False, description="dev only: admin endpoints open when no token is configured")
    max_body_bytes: int = Field(2_000_000, ge=1_024, description="larger request bodies get 413")
    request_deadline_s: float = Field(
        0.25, gt=0, le=30, description="time budget for feature-store reads; past it the feed degrades"
    )
    trending_k: int = Field(50, ge=0, le=1_000, description="trending items read from the store per request")
    friends_limit: int = Field(50, ge=0, le=1_000, description="friends counted for social proof")

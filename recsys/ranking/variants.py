"""Ranking variants: the knobs a product team A/B tests, as typed YAML.

Why typed: a misspelt weight in an experiment config must fail loudly at load time (naming the key
and file), not silently rank with a default. Every variant lives in ``configs/ranking/<name>.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.shipped import resolve_config_path

DEFAULT_VARIANT_NAME = "default"
DEFAULT_VARIANTS_DIR = "configs/ranking"


class VariantError(ValueError):
    """A ranking-variant file is missing, unreadable or invalid (the message names file and key)."""


class ScoreWeights(BaseModel):
    """Weights of the per-candidate signals; each signal is normalised to [0, 1] per request."""

    model_config = ConfigDict(extra="forbid")

    item_score: float = Field(
        default=1.0, ge=0, description="model dot product, min-max normalised per request"
    )
    kol_affinity: float = Field(default=0.5, ge=0, description="user's affinity to the promoting KOL")
    trust: float = Field(default=0.4, ge=0, description="social proof: friends who bought the item")
    category_fit: float = Field(default=0.2, ge=0, description="creator-category fit of the promoting KOL")
    trending: float = Field(default=0.2, ge=0, description="trending / popularity score")
    freshness: float = Field(default=0.1, ge=0, description="recency of the promoting post")


class CandidateCounts(BaseModel):
    """How many candidates each source may propose before filtering."""

    model_config = ConfigDict(extra="forbid")

    ann_k: int = Field(default=200, ge=0, description="FAISS nearest items to the user embedding")
    followed_kol_posts: int = Field(
        default=100, ge=0, description="fresh posts of followed / high-affinity KOLs"
    )
    friends_bought: int = Field(default=50, ge=0, description="items the user's share-graph friends bought")
    trending_k: int = Field(default=50, ge=0, description="trending items (service arg, else run popularity)")
    explore_slots: int = Field(
        default=2, ge=0, description="new-creator slots per 20-item page (fewer on shorter pages)"
    )
    posts_per_kol: int = Field(default=5, ge=1, description="newest posts taken from each followed KOL")
    affinity_kols: int = Field(
        default=10, ge=0, description="top-affinity (unfollowed) KOLs whose posts are candidates"
    )
    similar_to_recent: int = Field(default=20, ge=0, description="neighbours of the user's recent items")
    similar_search_effort: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="share of the index's nprobe / efSearch spent on the neighbours of recent items: the "
        "mean of recent items is an easy query (on the 1M-item bench index a quarter of the nprobe still "
        "finds 98% of its exact top 56); exact indexes ignore it",
    )


class RankingVariant(BaseModel):
    """One arm of a ranking experiment: signal weights, candidate budgets, caps and penalties."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1)
    description: str = ""
    weights: ScoreWeights = Field(default_factory=ScoreWeights)
    candidates: CandidateCounts = Field(default_factory=CandidateCounts)
    per_kol_cap: int = Field(default=2, ge=1, description="max entries promoted by one KOL per page")
    per_category_cap: int = Field(default=4, ge=1, description="max entries of one category per page")
    hide_demotion: float = Field(
        default=0.5, ge=0, description="score subtracted for an item whose category/KOL the user recently hid"
    )
    follow_bonus: float = Field(
        default=0.5, ge=0, le=1, description="affinity floor for a KOL the user follows"
    )
    freshness_half_life_days: float = Field(default=7.0, gt=0)
    explore_max_followers: int = Field(
        default=50,
        ge=0,
        description="a creator with at most this many followers counts as 'new' for exploration",
    )


def _format_validation(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def variant_from_dict(raw: Any, source: str = "<dict>", name: str | None = None) -> RankingVariant:
    if not isinstance(raw, dict):
        raise VariantError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    data = dict(raw)
    if name is not None:
        data.setdefault("name", name)
    try:
        return RankingVariant.model_validate(data)
    except ValidationError as exc:
        raise VariantError(_format_validation(exc, source)) from None


def load_variant(path: str | Path) -> RankingVariant:
    """Load one variant; its name defaults to the file stem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise VariantError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise VariantError(f"{path}: invalid YAML ({exc})") from None
    return variant_from_dict(raw if raw is not None else {}, source=str(path), name=path.stem)


def load_variants(directory: str | Path = DEFAULT_VARIANTS_DIR) -> dict[str, RankingVariant]:
    """All ``*.yaml`` variants in ``directory`` keyed by name; names must be unique."""
    directory = resolve_config_path(directory)
    if not directory.is_dir():
        raise VariantError(f"{directory}: no such ranking-variant directory")
    out: dict[str, RankingVariant] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        variant = load_variant(path)
        if variant.name in out:
            raise VariantError(f"{path}: duplicate variant name {variant.name!r}")
        out[variant.name] = variant
    return out

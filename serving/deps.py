"""Request dependencies as ``Annotated`` aliases (FastAPI's convention).

Why functions reading ``app.state``: the lifespan puts the loaded objects there once; tests replace
any of them per app with ``app.dependency_overrides[get_store] = ...`` without touching globals.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from features.base import FeatureStore
from recsys.ranking.variants import RankingVariant
from serving.metrics import ServiceMetrics
from serving.settings import Settings
from serving.state import ModelHolder


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> FeatureStore:
    store: FeatureStore = request.app.state.store
    return store


def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def get_variants(request: Request) -> dict[str, RankingVariant]:
    variants: dict[str, RankingVariant] = request.app.state.variants
    return variants


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[FeatureStore, Depends(get_store)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
VariantsDep = Annotated[dict[str, RankingVariant], Depends(get_variants)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]

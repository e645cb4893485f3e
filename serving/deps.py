"""Request dependencies as ``Annotated`` aliases (FastAPI's convention).

Why functions reading ``app.state``: the lifespan puts the loaded objects there once; tests replace
any of them per app with ``app.dependency_overrides[get_store] = ...`` without touching globals.

Why ``async def``: FastAPI runs a plain ``def`` dependency in anyio's worker thread (a thread hop and
two context switches each); these only read an attribute, so they run on the event loop instead.
Keep every dependency here (and in the routers) ``async`` unless it really blocks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from features.base import FeatureStore
from recsys.ranking.variants import RankingVariant
from serving.metrics import ServiceMetrics
from serving.settings import Settings
from serving.state import ModelHolder
from serving.trending_cache import TrendingCache


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> FeatureStore:
    store: FeatureStore = request.app.state.store
    return store


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_variants(request: Request) -> dict[str, RankingVariant]:
    variants: dict[str, RankingVariant] = request.app.state.variants
    return variants


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_trending_cache(request: Request) -> TrendingCache:
    cache: TrendingCache = request.app.state.trending_cache
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[FeatureStore, Depends(get_store)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
VariantsDep = Annotated[dict[str, RankingVariant], Depends(get_variants)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
TrendingCacheDep = Annotated[TrendingCache, Depends(get_trending_cache)]

"""Request dependencies as ``Annotated`` aliases (FastAPI's convention).

Why functions reading the app's ``ServiceState``: the lifespan puts the loaded objects there once;
tests replace any of them per app with ``app.dependency_overrides[get_store] = ...`` without touching globals.

Why ``async def``: FastAPI runs a plain ``def`` dependency in anyio's worker thread (a thread hop and
two context switches each); these only read an attribute, so they run on the event loop instead.
Keep every dependency here (and in the routers) ``async`` unless it really blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from features.base import FeatureStore
from recsys.experiments.config import ExperimentConfig
from recsys.ranking.variants import RankingVariant
from serving.metrics import ServiceMetrics
from serving.service_state import service_state
from serving.settings import Settings
from serving.state import ModelHolder
from serving.trending_cache import TrendingCache


async def get_settings(request: Request) -> Settings:
    settings: Settings = service_state(request.app).settings
    return settings


async def get_store(request: Request) -> FeatureStore:
    return service_state(request.app).require_store()


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = service_state(request.app).holder
    return holder


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = service_state(request.app).metrics
    return metrics


@dataclass(frozen=True, slots=True)
class FeedEnv:
    """Everything ``GET /v1/feed`` reads from the app besides the store, as ONE dependency.

    Why: FastAPI resolves every dependency on its own (a coroutine call and bookkeeping each), and the
    feed is the hot path; five of its six inputs are plain ``ServiceState`` reads. The store stays its
    own dependency, so tests can still swap it with ``dependency_overrides[get_store]``."""

    settings: Settings
    holder: ModelHolder
    variants: dict[str, RankingVariant]
    metrics: ServiceMetrics
    trending_cache: TrendingCache
    experiments: dict[str, ExperimentConfig]


async def get_feed_env(request: Request) -> FeedEnv:
    st = service_state(request.app)
    return FeedEnv(st.settings, st.holder, st.variants, st.metrics, st.trending_cache, st.experiments)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[FeatureStore, Depends(get_store)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
FeedEnvDep = Annotated[FeedEnv, Depends(get_feed_env)]

"""Everything the app keeps between requests, as one typed object.

Why: Starlette's ``app.state`` takes any attribute, so a typo or a missing start-up step shows up as
an AttributeError in some request, and nothing says which objects exist or when. ``create_app``
builds one :class:`ServiceState` with what exists from the start; the lifespan fills in what it
loads (store, variants, event log, ...) and clears it at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from features.base import FeatureStore
    from features.eventlog import EventLog
    from features.group_commit import GroupCommitter
    from features.replay import Replayer
    from recsys.experiments.config import ExperimentConfig
    from recsys.ranking.variants import RankingVariant
    from serving.event_source import EventSource
    from serving.limits import ConcurrencyLimiter
    from serving.metrics import ServiceMetrics
    from serving.outbox import Outbox
    from serving.run_pointer import RunChannel, RunPointer
    from serving.settings import Settings
    from serving.state import LoadedModel, ModelHolder
    from serving.trending_cache import TrendingCache


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics
    trending_cache: TrendingCache
    holder: ModelHolder
    limiter: ConcurrencyLimiter
    preloaded: LoadedModel | None = None
    """The run ``kolfeed serve`` loaded before start-up; the holder owns it once the app starts."""
    # --- set by the lifespan ---
    store: FeatureStore | None = None
    variants: dict[str, RankingVariant] = field(default_factory=dict)
    experiments: dict[str, ExperimentConfig] = field(default_factory=dict)
    event_source: EventSource | None = None
    run_pointer: RunPointer | None = None
    run_channels: list[RunChannel] = field(default_factory=list)
    event_log: EventLog | None = None
    replayer: Replayer | None = None
    outbox: Outbox | None = None
    committer: GroupCommitter | None = None

    def require_store(self) -> FeatureStore:
        if self.store is None:
            raise RuntimeError("the feature store is opened by the app's lifespan; it has not run")
        return self.store


def service_state(app: FastAPI) -> ServiceState:
    """The app's :class:`ServiceState` (set by ``create_app``)."""
    state: ServiceState = app.state.service
    return state

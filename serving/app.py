"""The FastAPI application factory and its lifespan (load model, variants and store once).

Why a factory taking ``Settings``: tests and ``kolfeed serve`` build independent apps with their own
configuration, metrics registry and store; nothing is global. Everything heavy happens in the
lifespan, so importing the module is cheap and a bad run/store fails startup with a clear error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from features.base import FeatureStore
from features.errors import StoreAuthError, StoreUnavailable
from features.eventlog import EventLog, claim_worker_log
from features.factory import open_store
from features.group_commit import GroupCommitter
from features.replay import Replayer
from recsys.artifacts import ArtifactError, newest_run
from recsys.ranking.variants import VariantError, load_variants
from serving.errors import BodyLimitMiddleware, install_exception_handlers
from serving.experiments import experiments_context
from serving.feed_fast_path import FeedFastPath
from serving.limits import ConcurrencyLimiter, LimitConfig, LimitMiddleware, register_reliability_metrics
from serving.logs import configure_logging
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.openapi import install_openapi
from serving.outbox import Outbox, log_marker_id
from serving.routers import admin, dashboard, events, experiments, feed, health, kols
from serving.run_pointer import FileRunChannel, RunChannel, RunPointer, StoreRunChannel, catch_up, follow
from serving.service_state import ServiceState, service_state
from serving.settings import Settings
from serving.state import LoadedModel, ModelHolder, load_model
from serving.trending_cache import TrendingCache

log = logging.getLogger(__name__)

STARTUP_STORE_CHECK_S = 2.0
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
BACKGROUND_STOP_S = 5.0
"""How long shutdown waits for a background task (outbox, run follower) to stop."""


def run_dir_to_serve(settings: Settings) -> Path:
    """The configured run dir, else the newest run under runs_root (raises ArtifactError if none)."""
    return settings.run_dir if settings.run_dir is not None else newest_run(settings.runs_root)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = service_state(app)
    settings = state.settings
    metrics = state.metrics
    variants = load_variants(settings.ranking_dir)
    if settings.default_variant not in variants:
        raise VariantError(
            f"{settings.ranking_dir}: default variant {settings.default_variant!r} not found "
            f"(have {', '.join(sorted(variants))})"
        )
    holder = state.holder
    pointer = RunPointer(settings.served_run_file) if settings.served_run_file is not None else None
    state.run_pointer = pointer
    loaded: LoadedModel | None = state.preloaded
    if loaded is None:
        loaded = await asyncio.to_thread(initial_model, settings, pointer)
    state.preloaded = None  # the holder owns it from now on
    holder.set(loaded)
    metrics.model_version.set(loaded.version)
    store = open_store(settings.store_url.get_secret_value())
    metrics.store_backend.labels(scheme=urlsplit(settings.store_url.get_secret_value()).scheme or "?").set(1)
    channels: list[RunChannel] = [FileRunChannel(pointer)] if pointer is not None else []
    if settings.announce_run:
        channels.append(StoreRunChannel(store))
    state.run_channels = channels
    state.variants = variants
    state.store = store
    async with AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        stack.callback(state.trending_cache.close)
        await check_store_credentials(store)
        await stack.enter_async_context(experiments_context(app))  # arm labels become variant aliases
        await serve_the_announced_run(channels, holder, metrics)
        current = holder.current
        if current is not None:
            log.info("serving run %s v%s from %s", current.run_id, current.version, current.run_dir)
        await start_event_log(app, settings, store, stack)
        if channels:
            interval = settings.follow_interval_s
            run_until_shutdown(
                stack, "kolfeed-follow-run", lambda stop: follow(channels, holder, metrics, interval, stop)
            )
        freeze_startup_objects()
        yield


async def serve_the_announced_run(
    channels: list[RunChannel], holder: ModelHolder, metrics: ServiceMetrics
) -> None:
    """A replica started after a reload elsewhere switches to the announced run before serving; a
    store that does not answer leaves the configured run until the follower reads it."""
    await catch_up(channels, holder, metrics)


def freeze_startup_objects() -> None:
    """Move everything loaded at start-up out of the cyclic garbage collector's reach.

    Why: the model, routes and schemas are tens of thousands of long-lived objects; a full collection
    walking them took ~18 ms on the 1M-item benchmark model, which lands on whichever request
    triggers it (the p99 budget is 15 ms). Frozen objects are still freed by reference counting."""
    gc.collect()
    gc.freeze()


def initial_model(settings: Settings, pointer: RunPointer | None) -> LoadedModel:
    """The run named by the served-run pointer (a worker (re)started after a reload), else the
    configured one; a pointer naming a run that no longer loads falls back to the configured run."""
    target = None
    if pointer is not None:
        try:
            target = pointer.read()
        except ArtifactError as exc:
            log.error("%s; serving the configured run", exc)
    if target is not None:
        try:
            return load_model(target.run_dir)
        except ArtifactError as exc:
            log.error(
                "served-run pointer names %s, which does not load (%s); serving the configured run",
                target.run_dir,
                exc,
            )
    return load_model(run_dir_to_serve(settings))


def run_until_shutdown(
    stack: AsyncExitStack, name: str, body: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> None:
    """Run ``body(stop)`` as a background task; at shutdown set ``stop`` and wait for it a while."""
    stop = asyncio.Event()
    task = asyncio.create_task(body(stop), name=name)

    async def stop_task() -> None:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=BACKGROUND_STOP_S)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; cancelled", name, BACKGROUND_STOP_S)

    stack.push_async_callback(stop_task)


async def check_store_credentials(store: FeatureStore) -> None:
    """Fail start-up on a wrong store password (a config mistake); an unreachable store only degrades."""
    try:
        await asyncio.wait_for(store.trending(1), timeout=STARTUP_STORE_CHECK_S)
    except StoreAuthError:
        raise
    except (StoreUnavailable, TimeoutError) as exc:
        log.warning(
            "feature store %s not answering at start-up (%s); feeds are degraded until it does",
            store.url,
            type(exc).__name__,
        )


async def start_event_log(
    app: FastAPI, settings: Settings, store: FeatureStore, stack: AsyncExitStack
) -> None:
    """Open the durable event log and run the outbox (log → store replay) until shutdown."""
    if settings.event_log_dir is None:
        log.warning("no event log configured: events live only in the store %s", store.url)
        return
    log_dir: Path = settings.event_log_dir
    if settings.event_log_per_worker:  # one writer per directory: this process takes a free worker slot
        _, event_log = await asyncio.to_thread(
            claim_worker_log, settings.event_log_dir, replica=settings.replica
        )
        log_dir = event_log.directory
        log.info("worker process %d writes the event log %s", os.getpid(), log_dir)
    else:
        event_log = await asyncio.to_thread(EventLog, settings.event_log_dir, replica=settings.replica)
    stack.callback(event_log.close)
    if event_log.recovery.torn_records:
        log.warning(
            "event log %s: recovered from a torn tail (%d bytes dropped)",
            log_dir,
            event_log.recovery.dropped_bytes,
        )
    # The position file is written without fsync: it is atomic (rename) anyway, and after a power loss
    # a stale position only re-applies a few batches; fsyncing it per request would double the cost.
    marker = await asyncio.to_thread(log_marker_id, log_dir)
    replayer = Replayer(event_log, fsync=False, log_id=marker)
    # Replicas and workers share the store: a rebuild replays this log without clearing the others'
    # (a store that lost its data is empty anyway).
    outbox = Outbox(replayer, store, marker, clear_on_rebuild=False)
    committer = GroupCommitter(event_log, replayer)
    stack.push_async_callback(replayer.flush)  # the position direct applies left unsaved
    stack.push_async_callback(committer.aclose)  # runs first (a stack): the groups in flight, then the above
    state = service_state(app)
    state.event_log = event_log
    state.replayer = replayer
    state.outbox = outbox
    state.committer = committer
    run_until_shutdown(stack, "kolfeed-outbox", lambda stop: outbox.run(settings.replay_interval_s, stop))
    log.info(
        "event log %s: last seq %d, %d pending for the store",
        log_dir,
        event_log.last_seq,
        replayer.pending,
    )


def create_app(settings: Settings | None = None, preloaded: LoadedModel | None = None) -> FastAPI:
    """Build the app; ``preloaded`` lets ``kolfeed serve`` load (and report errors on) the run first."""
    settings = settings if settings is not None else Settings()
    if settings.log_format is not None:
        configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(
        title="kolfeed",
        summary="Personalised social-commerce feed: creators' posts ranked per user",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # serving/openapi.py serves /docs with packaged assets (no CDN)
        redoc_url=None,
        # FastAPI's native OpenTelemetry off: the service reports through /metrics (Prometheus) and
        # its JSON logs, and looking for a configured OTel provider on every request cost ~4% of a
        # one-event POST's CPU.
        telemetry=NO_OPENTELEMETRY,
    )
    metrics = ServiceMetrics()
    limiter = ConcurrencyLimiter(
        LimitConfig(
            max_inflight=settings.max_inflight,
            max_waiting=settings.max_waiting,
            max_queue_wait_s=settings.max_queue_wait_s,
            request_timeout_s=settings.request_timeout_s,
        )
    )
    app.state.service = ServiceState(
        settings=settings,
        metrics=metrics,
        trending_cache=TrendingCache(settings.trending_cache_s, settings.trending_stale_s),
        holder=ModelHolder(),
        limiter=limiter,
        preloaded=preloaded,
    )
    register_reliability_metrics(metrics, app)
    install_exception_handlers(app)
    if settings.feed_fast_path:  # added first = innermost of ours: the middlewares below still apply
        app.add_middleware(FeedFastPath)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(LimitMiddleware, limiter=limiter)  # sheds load before any body is read
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last = outermost: times everything
    app.include_router(feed.router)
    app.include_router(events.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(experiments.router)
    app.include_router(kols.router)
    app.include_router(dashboard.router)
    install_openapi(app)
    return app

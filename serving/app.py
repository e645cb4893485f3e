"""The FastAPI application factory and its lifespan (load model, variants and store once).

Why a factory taking ``Settings``: tests and ``kolfeed serve`` build independent apps with their own
configuration, metrics registry and store; nothing is global. Everything heavy happens in the
lifespan, so importing the module is cheap and a bad run/store fails startup with a clear error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from features.factory import open_store

from recsys.artifacts import newest_run
from recsys.ranking.variants import VariantError, load_variants
from serving.errors import BodyLimitMiddleware, install_exception_handlers
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.routers import admin, events, feed, health
from serving.settings import Settings
from serving.state import LoadedModel, ModelHolder, load_model

log = logging.getLogger(__name__)


def run_dir_to_serve(settings: Settings) -> Path:
    """The configured run dir, else the newest run under runs_root (raises ArtifactError if none)."""
    return settings.run_dir if settings.run_dir is not None else newest_run(settings.runs_root)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: ServiceMetrics = app.state.metrics
    variants = load_variants(settings.ranking_dir)
    if settings.default_variant not in variants:
        raise VariantError(
            f"{settings.ranking_dir}: default variant {settings.default_variant!r} not found "
            f"(have {', '.join(sorted(variants))})"
        )
    holder = ModelHolder()
    loaded: LoadedModel | None = app.state.preloaded
    if loaded is None:
        loaded = await asyncio.to_thread(load_model, run_dir_to_serve(settings))
    app.state.preloaded = None  # the holder owns it from now on
    holder.set(loaded)
    metrics.model_version.set(loaded.version)
    store = open_store(settings.store_url.get_secret_value())
    metrics.store_backend.labels(scheme=urlsplit(settings.store_url.get_secret_value()).scheme or "?").set(1)
    app.state.variants = variants
    app.state.holder = holder
    app.state.store = store
    log.info("serving run %s v%s from %s", loaded.run_id, loaded.version, loaded.run_dir)
    try:
        yield
    finally:
        await store.close()


def create_app(settings: Settings | None = None, preloaded: LoadedModel | None = None) -> FastAPI:
    """Build the app; ``preloaded`` lets ``kolfeed serve`` load (and report errors on) the run first."""
    settings = settings if settings is not None else Settings()
    app = FastAPI(
        title="kolfeed",
        summary="Personalised social-commerce feed: creators' posts ranked per user",
        version="1",
        lifespan=lifespan,
    )
    metrics = ServiceMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.preloaded = preloaded
    install_exception_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last = outermost: times everything
    app.include_router(feed.router)
    app.include_router(events.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    return app

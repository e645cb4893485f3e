"""The model being served, and how a new one replaces it without downtime.

Why a holder with one reference: a request takes ``holder.current`` once and uses that snapshot to
the end, so a reload (load aside in a worker thread, verify checksums, then one assignment) never
mixes two models inside one response, and a failed load leaves the old model serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from recsys.artifacts import ArtifactError, read_manifest
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel

log = logging.getLogger(__name__)


class ModelNotLoaded(RuntimeError):
    """No model has been loaded yet (readiness says so; the feed answers 503)."""


@dataclass(frozen=True)
class LoadedModel:
    model: FeedModel
    ranker: FeedRanker
    run_dir: Path
    run_id: str
    version: int
    loaded_at: float


def load_model(run_dir: Path) -> LoadedModel:
    """Blocking: load + verify a run directory (raises ArtifactError on a missing or corrupt run)."""
    run_dir = Path(run_dir)
    model = FeedModel.load(run_dir)  # verifies every checksum in the manifest
    manifest = getattr(model, "manifest", None)
    if manifest is None:
        manifest = read_manifest(run_dir)
    off = model.signals_off()
    if off:
        log.warning("run %s: signals off: %s; feeds use the others", manifest.run_id, "; ".join(off))
    return LoadedModel(
        model=model,
        ranker=FeedRanker(model),
        run_dir=run_dir.resolve(),
        run_id=str(manifest.run_id),
        version=int(manifest.version),
        loaded_at=time.time(),
    )


class ModelHolder:
    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._reload_lock = asyncio.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def get(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise ModelNotLoaded("no model loaded")
        return loaded

    def set(self, loaded: LoadedModel) -> None:
        self._current = loaded

    async def reload(self, run_dir: Path) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``run_dir`` aside and swap it in; returns (previous, new). Old model stays on failure."""
        async with self._reload_lock:  # one reload at a time; requests are never blocked by it
            try:
                new = await asyncio.to_thread(load_model, run_dir)
            except ArtifactError:
                raise
            except (OSError, ValueError, KeyError) as exc:
                raise ArtifactError(f"{run_dir}: cannot load ({exc})") from exc
            previous = self._current
            self._current = new
            gc.freeze()  # the new model joins the start-up objects outside the collector (serving.app)
            log.info(
                "model swapped: %s v%s -> %s v%s",
                previous.run_id if previous else None,
                previous.version if previous else None,
                new.run_id,
                new.version,
            )
            return previous, new

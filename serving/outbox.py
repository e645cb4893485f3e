"""Keeps the feature store in step with the durable event log, including after the store lost its data.

Why: the replayer's position file says "everything up to seq N is in the store", which is only
true of the store it was written against. A Redis without persistence comes back EMPTY after a
restart (and a memory:// store is empty after every process start). So the store itself keeps each
log's applied position, beside the counters and written atomically with them (exactly once:
:mod:`features.logged_writes`). If a check finds that position gone (``store.log_intact``), or an
apply is refused because part of it is gone, the log is replayed from the start with
``rebuilding=True``: what the store still holds is skipped, what it lost is applied again, once;
then the log is sealed. With several worker processes or replicas each log has its own id, and a
rebuild never clears the store (that would wipe the others' logs). The ids live in
:mod:`features.markers` (``kolfeed store rebuild`` uses them too).

Direct applies that reach a restarted store before the next check are refused (the position is
missing), so no event is counted twice: the restart test checks trending and KOL affinity totals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from features.base import FeatureStore
from features.errors import StoreUnavailable
from features.markers import log_marker_id
from features.replay import Replayer, ReplayResult

__all__ = ["Outbox", "OutboxStatus", "log_marker_id"]

log = logging.getLogger(__name__)


@dataclass
class OutboxStatus:
    """What /readyz and the chaos report show about the log → store replay."""

    rebuilds: int = 0
    replayed: int = 0
    last_error: str | None = None
    last_ok_at: float | None = None
    store_synced: bool = False
    """The last check found the marker and nothing pending."""


class Outbox:
    """Runs the replayer against one store and rebuilds the store when it comes back empty."""

    def __init__(
        self, replayer: Replayer, store: FeatureStore, marker_id: int, clear_on_rebuild: bool = True
    ) -> None:
        """``clear_on_rebuild=False`` for one of several worker logs sharing a store: clearing would
        wipe what the other workers replayed, so this log alone is replayed from the start. The
        replayer applies exactly once under ``marker_id`` (its ``log_id``, set here if unset)."""
        if replayer.log_id is None:
            replayer.log_id = marker_id
        self.replayer = replayer
        self.store = store
        self.marker_id = marker_id
        self.clear_on_rebuild = clear_on_rebuild
        self.status = OutboxStatus()

    async def marker_present(self) -> bool:
        return await self.store.log_intact(self.marker_id)

    async def sync_once(self) -> ReplayResult:
        """One check + replay; raises StoreUnavailable when the store cannot be reached."""
        if not await self.marker_present():
            logged = self.replayer.log.end_seq()
            log.log(
                logging.WARNING if logged else logging.INFO,
                "feature store %s does not hold this event log (new, restarted or flushed): "
                "rebuilding it from the log (%d events)",
                self.store.url,
                logged,
            )
            if self.clear_on_rebuild:
                await self.store.clear()
            await self.replayer.reset(0)
            result = await self.replayer.replay_pending(self.store, rebuilding=True)
            if result.stopped is not None:
                raise StoreUnavailable(result.stopped)
            await self.store.seal_log(self.marker_id, result.position)
            self.status.rebuilds += 1
        else:
            result = await self.replayer.replay_pending(self.store)
            if result.stopped is not None:
                raise StoreUnavailable(result.stopped)
        self.status.replayed += result.applied
        if result.applied:
            log.info(
                "replayed %d logged events into %s (%d pending)",
                result.applied,
                self.store.url,
                result.pending,
            )
        return result

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Until ``stop``: sync every ``interval_s`` (sooner when a request nudges the replayer)."""
        while not stop.is_set():
            self.replayer._wake.clear()  # nudges arriving during the sync trigger the next one
            healthy = False
            try:
                result = await self.sync_once()
            except StoreUnavailable as exc:
                self.status.last_error = str(exc)
                self.status.store_synced = False
            except Exception as exc:  # never let the background task die: log and retry
                log.exception("event replay failed; retrying in %.1f s", interval_s)
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                self.status.store_synced = False
            else:
                healthy = True
                self.status.last_error = None
                self.status.last_ok_at = time.time()
                self.status.store_synced = result.pending == 0
            waits = [asyncio.ensure_future(stop.wait())]
            if healthy:  # while the store is down, nudges do not shorten the retry interval
                waits.append(asyncio.ensure_future(self.replayer._wake.wait()))
            _done, rest = await asyncio.wait(waits, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
            for task in rest:
                task.cancel()

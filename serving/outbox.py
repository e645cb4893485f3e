"""Keeps the feature store in step with the durable event log, including after the store lost its data.

Why a marker: the replayer's position says "everything up to seq N is in the store", which is only
true of the store it was written against. A Redis without persistence comes back EMPTY after a
restart (and a memory:// store is empty after every process start), so the position would lie and
the events before it would be gone from the store for good. Each log therefore writes a marker into
the store (an impression by a reserved user of an item id unique to this log: weight 0, so it
touches nothing a feed reads) once the store holds the whole log. If a check finds the marker
missing, the store is treated as new: its keys are cleared, the position reset to 0 and the log
replayed from the start, then the marker is written again. With several worker processes
(``kolfeed serve --workers``) each worker's log has its own marker, and a worker that finds its
marker missing replays its own log without clearing the store (that would wipe the others' logs).
The markers themselves live in :mod:`features.markers` (``kolfeed store rebuild`` writes them too).

Known bound: direct applies that land on a restarted store before the next check (at most one
interval) are applied twice by the rebuild (with one process the store is cleared first; with
workers it is not); set-valued state (seen, bought, hidden, recent) is unaffected, time-decayed
counters (trending, KOL affinity) count those events twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from features.base import FeatureStore
from features.errors import StoreUnavailable
from features.markers import log_marker_id, marker_present, write_marker
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
        wipe what the other workers replayed, so this log alone is replayed from the start."""
        self.replayer = replayer
        self.store = store
        self.marker_id = marker_id
        self.clear_on_rebuild = clear_on_rebuild
        self.status = OutboxStatus()

    async def marker_present(self) -> bool:
        return await marker_present(self.store, self.marker_id)

    async def write_marker(self) -> None:
        await write_marker(self.store, self.marker_id)

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
            result = await self.replayer.replay_pending(self.store)
            if result.stopped is not None:
                raise StoreUnavailable(result.stopped)
            await self.write_marker()
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

"""Replay of the durable event log into the feature store (an outbox), so the store can be down.

Why: the service acknowledges an event once it is in the log (:mod:`features.eventlog`); the store
is only a cache. A :class:`Replayer` remembers, in ``<log dir>/replay.pos`` (written atomically:
temp file + fsync + rename + directory fsync), the sequence number up to which the log is known to
be in the store, and applies everything after it when the store is reachable again.

Service contract (how serving wires it):

* start-up (lifespan): ``log = EventLog(dir)``, ``replayer = Replayer(log)``, then
  ``task = asyncio.create_task(run_replayer(store, replayer, interval_s, stop_event))``; on shutdown
  ``stop_event.set(); await task; log.close()``. One process owns one log directory (``LOCK``);
  with several worker processes each opens its own sub-log with ``claim_worker_log(dir)`` and runs
  its own ``Replayer`` over it (``replay.pos`` lives in the sub-log). Each sub-log reaches the store
  in its own order; there is no order between workers' events (as between concurrent requests).
* ``POST /v1/events``: ``result = await committer.submit(events, store)``
  (:class:`features.group_commit.GroupCommitter`: the same steps for a whole group of concurrent
  requests, one fsync and one :meth:`Replayer.apply_appended` per group). One request alone:
  ``result = await log_and_apply(log, replayer, store, events)``. It appends
  the batch with ``await asyncio.to_thread(log.append_batch, events)`` (durable when it returns;
  if THAT raises, the events were not accepted: answer 5xx, or 422 for ``InvalidEventError``), then
  applies the batch to the store directly only if the replayer is caught up (every earlier event is
  already in the store, so order is preserved) and advances the position. If the store is down, or
  earlier events are still pending, the batch stays pending and the background replayer applies it,
  in log order, when the store answers again. Either way the events are acknowledged: answer 2xx;
  ``result.applied_to_store`` tells whether reads already reflect them.
* readiness/metrics: ``replayer.pending`` is the number of logged events not yet in the store.

Exactly once: the store's counters (affinity, trending) are not idempotent, so a replayer given the
log's id (``log_id``, what the service and ``kolfeed store rebuild`` do) applies through
``store.record_logged``: the store keeps each log's applied position beside the counters, written
in the same script (:mod:`features.logged_writes`), and skips what it already holds. The position
file here is then only where reading starts: a crash between "store accepted" and "position
written", or a position file lost to a power loss (``fsync=False``), re-sends batches the store
skips. So direct applies do not write it (a file replaced per group of requests was a measurable
share of ingestion CPU); the replayer's next round (every ``replay_interval_s`` in the service) or
:meth:`Replayer.flush` (shutdown) does. Without ``log_id`` (plain ``record_events``) every apply
writes it, and a crash re-applies at most one batch.
Direct applies and replays are serialised by one lock.

Events the store rejects as invalid (:class:`~features.errors.InvalidEventError`) cannot become valid
by retrying; the replayer then applies that batch event by event and skips only the rejected ones
(counted in ``skipped_invalid`` and logged) instead of blocking the outbox forever. The log itself
validates events on append, so this is a last resort.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from features.base import FeatureStore, StoreEvent
from features.errors import InvalidEventError, StoreUnavailable
from features.eventlog import Cursor, EventLog, EventLogError, log_dirs
from features.markers import log_marker_id

log = logging.getLogger(__name__)

POSITION_FILE = "replay.pos"
REPLAY_BATCH = 500


class LogSource(Protocol):
    """What the replayer needs from a log: :class:`EventLog` (writer) or :class:`LogReader`."""

    directory: Path

    def end_seq(self) -> int: ...

    def read_batch(
        self, start_seq: int, limit: int, end_seq: int | None = None, cursor: Cursor | None = None
    ) -> tuple[list[tuple[int, StoreEvent]], Cursor | None]: ...


@dataclass
class ReplayResult:
    applied: int = 0
    """Events the store accepted during this call."""
    batches: int = 0
    skipped_invalid: int = 0
    position: int = 0
    """Position after the call: every event with seq <= position is in the store."""
    pending: int = 0
    """Logged events still not in the store after the call."""
    stopped: str | None = None
    """Why the call stopped before catching up (store unavailable), None when caught up."""


@dataclass(frozen=True)
class ApplyResult:
    accepted: int
    """Events durably appended to the log (acknowledge these)."""
    applied_to_store: bool
    first_seq: int = 0
    last_seq: int = 0


def read_position(path: Path) -> int:
    """The stored position (0 when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    try:
        seq = json.loads(text)["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"seq must be a non-negative integer, got {seq!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise EventLogError(f'{path}: unreadable replay position ({exc}); expected {{"seq": N}}') from None
    return seq


def write_position(path: Path, seq: int, fsync: bool = True) -> None:
    """Atomically replace the position file (readers see the old or the new value, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"seq": seq, "updated": round(time.time(), 3)}).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Replayer:
    """Tracks and advances the log position up to which events are in the store."""

    def __init__(
        self,
        log_source: LogSource,
        *,
        batch_size: int = REPLAY_BATCH,
        fsync: bool = True,
        log_id: int | None = None,
    ) -> None:
        """``log_id`` (the log's store marker, :func:`features.markers.log_marker_id`): apply
        exactly once through ``store.record_logged``; None: plain ``record_events`` (a batch
        re-applied after a crash counts twice)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.log = log_source
        self.batch_size = batch_size
        self.fsync = fsync
        self.log_id = log_id
        self.path = Path(log_source.directory) / POSITION_FILE
        self._position = read_position(self.path)
        end = log_source.end_seq()
        if self._position > end:
            log.warning(
                "%s: replay position %d is beyond the end of the log (%d); clamping",
                self.path,
                self._position,
                end,
            )
            self._position = end
        self._cursor: Cursor | None = None
        self._unsaved = False
        """The position moved past what the file says (lazy direct applies, see :meth:`_advance`)."""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    @property
    def position(self) -> int:
        return self._position

    @property
    def pending(self) -> int:
        return max(self.log.end_seq() - self._position, 0)

    def nudge(self) -> None:
        """Ask :func:`run_replayer` to run now instead of at its next interval."""
        self._wake.set()

    async def reset(self, seq: int = 0) -> None:
        """Set the position (``kolfeed store rebuild`` resets to 0 after clearing the store)."""
        async with self._lock:
            await self._advance(seq)

    async def _advance(self, seq: int, *, lazy: bool = False) -> None:
        """Set the position and write the file; ``lazy`` (direct applies) with ``log_id`` only marks
        it unsaved: the store keeps the applied position itself (exactly once), so the file only
        says where reading starts, and a stale file re-sends batches the store skips. The next
        :meth:`replay_pending` (the outbox, every ``replay_interval_s``) or :meth:`flush` writes it."""
        self._position = seq
        if lazy and self.log_id is not None:
            self._unsaved = True
            return
        await self._save()

    async def _save(self) -> None:
        self._unsaved = False
        seq = self._position
        try:
            # In a thread even without fsync: replacing the file (rename over the old one) takes
            # milliseconds on ext4, which would stall every request of the event loop.
            await asyncio.to_thread(write_position, self.path, seq, self.fsync)
        except OSError as exc:
            # The store has the events; only the crash bound widens until the next successful write.
            log.error("%s: could not persist replay position %d: %s", self.path, seq, exc)

    async def flush(self) -> None:
        """Write a position that direct applies advanced without writing (the service at shutdown)."""
        async with self._lock:
            if self._unsaved:
                await self._save()

    async def _apply(
        self, store: FeatureStore, batch: Sequence[tuple[int, StoreEvent]], rebuilding: bool
    ) -> None:
        if self.log_id is None:
            await store.record_events([ev for _, ev in batch])
        else:
            await store.record_logged(self.log_id, batch, rebuilding)

    async def replay_pending(
        self,
        store: FeatureStore,
        *,
        until: int | None = None,
        on_batch: Callable[[int], object] | None = None,
        rebuilding: bool = False,
    ) -> ReplayResult:
        """Apply every logged event after the position (up to ``until``), in order, in batches;
        never raises for an unavailable store (it stops and reports). Safe to call repeatedly and
        concurrently. ``on_batch(n)`` is called after each batch (progress bars). ``rebuilding``:
        the log is being replayed from its start into a store that lost (part of) it."""
        async with self._lock:
            result = ReplayResult(position=self._position)
            end = await asyncio.to_thread(self.log.end_seq)
            if until is not None:
                end = min(end, until)
            while self._position < end:
                start = self._position + 1
                batch, cursor = await asyncio.to_thread(
                    self.log.read_batch, start, self.batch_size, end, self._cursor
                )
                if not batch:
                    raise EventLogError(
                        f"{self.log.directory}: no records from seq {start} although end is {end}"
                    )
                try:
                    await self._apply(store, batch, rebuilding)
                    applied = len(batch)
                except StoreUnavailable as exc:
                    result.stopped = str(exc)
                    break
                except InvalidEventError as exc:
                    log.warning(
                        "replay: store rejected batch %d..%d (%s); applying one by one",
                        start,
                        batch[-1][0],
                        exc,
                    )
                    done = await self._apply_one_by_one(store, batch, result, rebuilding)
                    if not done:
                        break
                    applied = 0
                else:
                    await self._advance(batch[-1][0])
                self._cursor = cursor
                result.applied += applied
                result.batches += 1
                if on_batch is not None:
                    on_batch(len(batch))
            if self._unsaved:
                await self._save()
            result.position = self._position
            result.pending = max(end - self._position, 0)
            return result

    async def _apply_one_by_one(
        self,
        store: FeatureStore,
        batch: list[tuple[int, StoreEvent]],
        result: ReplayResult,
        rebuilding: bool,
    ) -> bool:
        """Per-event fallback for a batch with a poison event; False if the store went away."""
        for seq, ev in batch:
            try:
                await self._apply(store, [(seq, ev)], rebuilding)
                result.applied += 1
            except InvalidEventError as exc:
                result.skipped_invalid += 1
                log.error("replay: skipping event seq %d the store rejects: %s", seq, exc)
            except StoreUnavailable as exc:
                result.stopped = str(exc)
                self._cursor = None
                return False
            await self._advance(seq)
        return True

    async def apply_appended(
        self, store: FeatureStore, events: Sequence[StoreEvent], first_seq: int, last_seq: int
    ) -> bool:
        """Apply a just-appended batch directly if nothing before it is pending; True if applied
        (also when the replayer got to it first: it reads whatever the log holds, including
        batches fsynced but not yet applied by their requests)."""
        async with self._lock:
            if self._position >= last_seq:
                return True
            if self._position < first_seq - 1:
                self.nudge()  # earlier events pending: let the replayer keep the order
                return False
            skip = self._position - (first_seq - 1)  # the start the replayer already applied
            try:
                await self._apply(
                    store, list(zip(range(first_seq + skip, last_seq + 1), events[skip:], strict=True)), False
                )
            except StoreUnavailable:
                return False  # the replayer retries on its interval (or rebuilds a store that lost data)
            except Exception as exc:  # the events are durable; never fail an acknowledged request
                log.warning(
                    "direct store apply of seq %d..%d failed (%s); left to the replayer",
                    first_seq,
                    last_seq,
                    exc,
                )
                self.nudge()
                return False
            await self._advance(last_seq, lazy=True)
            return True


async def log_and_apply(
    event_log: EventLog, replayer: Replayer, store: FeatureStore, events: Sequence[StoreEvent]
) -> ApplyResult:
    """Append durably, then apply to the store if that keeps log order; see the module docstring.

    Raises only if the append fails (then nothing was accepted)."""
    if not events:
        return ApplyResult(0, True)
    first, last = await asyncio.to_thread(event_log.append_batch, events)
    applied = await replayer.apply_appended(store, events, first, last)
    return ApplyResult(accepted=len(events), applied_to_store=applied, first_seq=first, last_seq=last)


async def run_replayer(
    store: FeatureStore,
    log_or_replayer: EventLog | Replayer,
    interval_s: float,
    stop_event: asyncio.Event,
) -> None:
    """Background task: replay pending events every ``interval_s`` (sooner when nudged) until
    ``stop_event`` is set. Pass the same :class:`Replayer` the request path uses."""
    replayer = log_or_replayer if isinstance(log_or_replayer, Replayer) else Replayer(log_or_replayer)
    while not stop_event.is_set():
        replayer._wake.clear()  # nudges arriving during the replay below trigger the next one
        healthy = True
        try:
            result = await replayer.replay_pending(store)
            if result.applied or result.skipped_invalid:
                log.info(
                    "replayed %d events into %s (position %d, %d pending)",
                    result.applied,
                    store.url,
                    result.position,
                    result.pending,
                )
            healthy = result.stopped is None
        except Exception:
            log.exception("event replay failed; retrying in %.1f s", interval_s)
            healthy = False
        waits = [asyncio.ensure_future(stop_event.wait())]
        if healthy:  # while the store is down, nudges do not shorten the retry interval
            waits.append(asyncio.ensure_future(replayer._wake.wait()))
        _done, rest = await asyncio.wait(waits, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
        for task in rest:
            task.cancel()


@dataclass
class RebuildResult:
    cleared: bool
    replayed: int
    skipped_invalid: int
    position: int
    """The end of the log; for per-worker logs the sum of their positions (= events replayed)."""
    positions: dict[str, int] = field(default_factory=dict)
    """Position of each log replayed, by directory name (``worker-0``, … or the plain log's name)."""


async def rebuild_store(
    log_dir: str | Path, store: FeatureStore, *, clear: bool = True, progress: bool = True
) -> RebuildResult:
    """Recreate the store from the whole event log (``kolfeed store rebuild``): a plain log, or
    every ``worker-<i>`` sub-log of ``log_dir`` (:func:`features.eventlog.log_dirs`).

    Opens every log as its writer before touching the store, so it refuses to run while a service
    process owns any of them (two replayers would double-apply), and recovers torn tails as the
    service would. ``clear`` drops the store's keys (its prefix only) once, first; without it the
    logs are applied on top of what the store holds (right for an empty store). Every log's position
    is reset to 0 before the first is replayed (a crash midway then leaves nothing marked as in
    the store that is not), and ends at the end of its log. Raises ``StoreUnavailable`` if the
    store goes away midway (the positions then say how far it got). Each log's store marker
    (:mod:`features.markers`) is written once it is replayed, so a service started afterwards
    finds the store in step and does not rebuild it again."""
    from recsys.progress import progress as progress_bar

    dirs = log_dirs(log_dir)
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(EventLog(d)) for d in dirs]
        replayers = [Replayer(event_log, log_id=log_marker_id(event_log.directory)) for event_log in logs]
        if clear:
            await store.clear()
        for replayer in replayers:
            await replayer.reset(0)
        out = RebuildResult(clear, 0, 0, 0)
        total = sum(event_log.last_seq for event_log in logs)
        with progress_bar(total=total, desc="replaying event log", unit="ev", enabled=progress) as bar:
            for event_log, replayer in zip(logs, replayers, strict=True):
                result = await replayer.replay_pending(store, on_batch=bar.update, rebuilding=True)
                out.replayed += result.applied
                out.skipped_invalid += result.skipped_invalid
                out.position += result.position
                out.positions[event_log.directory.name] = result.position
                if result.stopped is not None:
                    where = f" in {event_log.directory.name}" if len(logs) > 1 else ""
                    raise StoreUnavailable(
                        f"store went away after {out.replayed} events "
                        f"(position {result.position}{where}): {result.stopped}"
                    )
                # the store now holds this whole log: the service must not rebuild it again at start
                assert replayer.log_id is not None
                await store.seal_log(replayer.log_id, result.position)
        return out

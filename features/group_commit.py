"""Group commit: concurrent requests share one write and one fsync of the event log.

Why: an fsync costs about a millisecond whatever it covers, so one fsync per request caps a
process near a thousand acknowledged requests per second while the disk idles. Here each request
queues its validated batch and waits; one drain task at a time takes everything queued, appends it
with a single write + fdatasync (:meth:`features.eventlog.EventLog.append_prepared`) and hands the
group to an apply task, which applies it to the store in one call when the replayer is caught up
(meanwhile the next group is being fsynced) and only then resolves every request of the group.
Requests arriving during an fsync form the next group, so the group size follows the load by
itself: no timer, no added latency when a request is alone.

Durability is unchanged: a request's future is resolved (and its 202 sent) only after the fsync
that covers its records returned. If the write or fsync fails, every request of that group gets the
error (none of them acknowledged) and the log refuses further appends (see :mod:`features.eventlog`).
An invalid batch is rejected in its own request before it joins a group, so it cannot fail others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from features.base import FeatureStore, StoreEvent
from features.eventlog import EventLog, PreparedBatch, prepare_batch
from features.replay import ApplyResult, Replayer

MAX_GROUP_EVENTS = 20_000
"""Upper bound of events per group (one write); a group always takes at least one request."""


@dataclass
class GroupCommitStats:
    """Counters for metrics and benchmarks: ``requests / groups`` is the mean group size."""

    groups: int = 0
    requests: int = 0
    events: int = 0
    largest_group: int = 0


@dataclass
class _Waiting:
    prepared: PreparedBatch
    events: Sequence[StoreEvent]
    store: FeatureStore
    done: asyncio.Future[ApplyResult]
    span: tuple[int, int] = (0, 0)
    applied: bool = False


class GroupCommitter:
    """The one path by which a serving process appends to its event log (one per log)."""

    def __init__(
        self,
        event_log: EventLog,
        replayer: Replayer,
        *,
        max_group_events: int = MAX_GROUP_EVENTS,
    ) -> None:
        if max_group_events < 1:
            raise ValueError(f"max_group_events must be >= 1, got {max_group_events}")
        self.log = event_log
        self.replayer = replayer
        self.max_group_events = max_group_events
        self.stats = GroupCommitStats()
        self._queue: list[_Waiting] = []
        """Validated, waiting for the next write + fsync."""
        self._durable: list[_Waiting] = []
        """Fsynced, waiting for the store step (then answered)."""
        self._drain_task: asyncio.Task[None] | None = None
        self._apply_task: asyncio.Task[None] | None = None

    async def submit(self, events: Sequence[StoreEvent], store: FeatureStore) -> ApplyResult:
        """Append ``events`` durably with whatever else is queued, then apply them to ``store`` if
        that keeps log order (consecutive requests naming the same store are applied in one call).
        Returns once the fsync covering them is done; raises
        :class:`features.errors.InvalidEventError` (nothing written) or the append's error (nothing
        of this group acknowledged)."""
        return await self.enqueue(events, store)

    def enqueue(self, events: Sequence[StoreEvent], store: FeatureStore) -> asyncio.Future[ApplyResult]:
        """:meth:`submit` as a future, resolved as described there. Why: a request awaits it under
        ``asyncio.shield`` (a cancelled request must not cancel its place in a group), and
        shielding a future costs no task per request, as shielding a coroutine does. Raises
        :class:`features.errors.InvalidEventError` at once (nothing queued)."""
        done: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        if not events:
            done.set_result(ApplyResult(0, True))
            return done
        prepared = prepare_batch(events)
        self._queue.append(_Waiting(prepared, events, store, done))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain(), name="kolfeed-group-commit")
        return done

    def _take_group(self) -> list[_Waiting]:
        n_events = 0
        take = 0
        for waiting in self._queue:
            if take and n_events + len(waiting.prepared) > self.max_group_events:
                break
            n_events += len(waiting.prepared)
            take += 1
        group, self._queue = self._queue[:take], self._queue[take:]
        return group

    async def _drain(self) -> None:
        while self._queue:
            group = self._take_group()
            try:
                spans = await asyncio.to_thread(self.log.append_prepared, [w.prepared for w in group])
            except asyncio.CancelledError:  # shutdown: the outcome of this group is unknown
                for waiting in [*group, *self._queue]:
                    waiting.done.cancel()
                self._queue = []
                raise
            except BaseException as exc:
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            for waiting, span in zip(group, spans, strict=True):
                waiting.span = span
            self.stats.groups += 1
            self.stats.requests += len(group)
            self.stats.events += sum(len(w.events) for w in group)
            self.stats.largest_group = max(self.stats.largest_group, len(group))
            # The store step runs beside the next group's fsync instead of before it.
            self._durable.extend(group)
            if self._apply_task is None or self._apply_task.done():
                self._apply_task = asyncio.create_task(self._apply_durable(), name="kolfeed-group-apply")

    async def _apply_durable(self) -> None:
        """Apply fsynced groups to the store in log order (several at once if they queued up), then
        answer their requests. They are durable: they are acknowledged even if this step fails."""
        while self._durable:
            batch, self._durable = self._durable, []
            try:
                await self._apply(batch)
            except asyncio.CancelledError:
                batch += self._durable
                self._durable = []
                raise
            finally:
                for waiting in batch:
                    if not waiting.done.done():
                        first, last = waiting.span
                        waiting.done.set_result(
                            ApplyResult(len(waiting.events), waiting.applied, first, last)
                        )

    async def _apply(self, group: list[_Waiting]) -> None:
        """Apply the group to the store(s), one call per run of requests naming the same store."""
        start = 0
        while start < len(group):
            end = start + 1
            while end < len(group) and group[end].store is group[start].store:
                end += 1
            run = group[start:end]
            events = [ev for w in run for ev in w.events]
            first, last = run[0].span[0], run[-1].span[1]
            applied = await self.replayer.apply_appended(run[0].store, events, first, last)
            for waiting in run:
                waiting.applied = applied
            start = end

    async def aclose(self) -> None:
        """Wait for the groups in flight (shutdown: before the log is closed)."""
        for task in (self._drain_task, self._apply_task):
            if task is not None and not task.done():
                with contextlib.suppress(Exception):
                    await task
        if self._apply_task is not None and not self._apply_task.done():  # started by the last group
            with contextlib.suppress(Exception):
                await self._apply_task

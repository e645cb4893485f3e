"""Which run the service serves, announced to every process that serves it.

Why: an admin reload reaches only the process that accepted the HTTP request. That process, once
the new run is loaded and swapped in, announces the run; every process follows the announcement and
reloads itself when it names another run, keeping its current model if that load fails, exactly like
a reload it received itself. A process that is (re)started reads the announcement first, so it
serves the current run, not the one it was started with. Two channels carry it:

* the feature store (:class:`StoreRunChannel`), for replicas on several machines that share only the
  store and a runs directory (the same path on every machine, e.g. a network mount);
* a small file (:class:`RunPointer`), for ``kolfeed serve --workers N`` on one machine (a cheap
  ``stat`` per interval), written atomically (temp file + rename).

Both hold JSON ``{"run_dir": ..., "run_id": ..., "version": ..., "written_at": ...}``; when both
name a run, the later ``written_at`` wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from features.base import FeatureStore
from features.errors import StoreUnavailable
from recsys.artifacts import ArtifactError
from serving.metrics import ServiceMetrics
from serving.state import ModelHolder

log = logging.getLogger(__name__)


ANNOUNCEMENT = "served-run"
"""Name of the served-run announcement in the feature store."""


@dataclass(frozen=True)
class ServedRun:
    run_dir: Path
    run_id: str
    version: int
    written_at: float = 0.0


def encode_run(run: ServedRun) -> str:
    body = {
        "run_dir": str(run.run_dir),
        "run_id": run.run_id,
        "version": run.version,
        "written_at": run.written_at or time.time(),
    }
    return json.dumps(body)


def decode_run(raw: str, where: str) -> ServedRun:
    try:
        body = json.loads(raw)
        return ServedRun(
            Path(body["run_dir"]),
            str(body["run_id"]),
            int(body["version"]),
            float(body.get("written_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{where}: not a served-run announcement ({exc})") from None


class RunChannel(Protocol):
    """Where the served run is announced (see the module docstring)."""

    where: str

    async def read(self) -> ServedRun | None:
        """The announced run; None when none is announced. Raises ArtifactError when malformed,
        StoreUnavailable when the channel cannot be read now."""
        ...

    async def write(self, run: ServedRun) -> None: ...


class StoreRunChannel:
    """The announcement in the feature store: one small value, read once per follow interval."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.where = f"store {store.url}"

    async def read(self) -> ServedRun | None:
        raw = await self.store.announced(ANNOUNCEMENT)
        return None if raw is None else decode_run(raw, self.where)

    async def write(self, run: ServedRun) -> None:
        await self.store.announce(ANNOUNCEMENT, encode_run(run))


class FileRunChannel:
    """:class:`RunPointer` as a channel: the file is read again only when its stamp changed."""

    def __init__(self, pointer: RunPointer) -> None:
        self.pointer = pointer
        self.where = str(pointer.path)
        self._last: ServedRun | None = None

    async def read(self) -> ServedRun | None:
        if self.pointer.changed():  # one stat: cheaper than a thread hop
            self._last = None
            self._last = await asyncio.to_thread(self.pointer.read)
        return self._last

    async def write(self, run: ServedRun) -> None:
        await asyncio.to_thread(self.pointer.write, run)


class RunPointer:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    def write(self, run: ServedRun) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(encode_run(run))
        os.replace(tmp, self.path)

    def read(self) -> ServedRun | None:
        """The run in the file; None when there is no file yet. A malformed file is an error."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        return decode_run(raw, str(self.path))

    def changed(self) -> bool:
        """True once per change of the file (by its mtime and size), including its first appearance."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True


async def newest_announced(channels: Sequence[RunChannel]) -> ServedRun | None:
    """The most recently announced run over ``channels`` (None if none announces one). A channel
    that cannot be read now or holds garbage is logged and skipped."""
    newest: ServedRun | None = None
    for channel in channels:
        try:
            run = await channel.read()
        except StoreUnavailable as exc:
            log.debug("served-run announcement in %s unreadable now: %s", channel.where, exc)
            continue
        except ArtifactError as exc:
            log.error("served-run announcement unreadable, keeping the current model: %s", exc)
            continue
        if run is not None and (newest is None or run.written_at > newest.written_at):
            newest = run
    return newest


async def announce(channels: Sequence[RunChannel], run: ServedRun) -> list[str]:
    """Write ``run`` to every channel; returns where it could not be written (logged)."""
    failed: list[str] = []
    stamped = ServedRun(run.run_dir, run.run_id, run.version, run.written_at or time.time())
    for channel in channels:
        try:
            await channel.write(stamped)
        except (StoreUnavailable, OSError) as exc:
            log.error("could not announce the served run in %s: %s", channel.where, exc)
            failed.append(channel.where)
    return failed


async def catch_up(channels: Sequence[RunChannel], holder: ModelHolder, metrics: ServiceMetrics) -> None:
    """Reload ``holder`` once if the newest announcement names another run than the one served.

    A failed load is logged and the current model keeps serving."""
    target = await newest_announced(channels)
    current = holder.current
    if target is None or (current is not None and current.run_dir == target.run_dir.resolve()):
        return
    try:
        previous, new = await holder.reload(target.run_dir)
    except ArtifactError as exc:
        metrics.reloads.labels(outcome="follow_failed").inc()
        log.error("following reload to %s failed, keeping the current model: %s", target.run_dir, exc)
        return
    metrics.reloads.labels(outcome="followed").inc()
    metrics.model_version.set(new.version)
    log.info(
        "followed reload: now serving %s v%s (was %s)",
        new.run_id,
        new.version,
        previous.run_id if previous else None,
    )


async def follow(
    channels: Sequence[RunChannel],
    holder: ModelHolder,
    metrics: ServiceMetrics,
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    """Every ``interval_s`` until ``stop`` is set: :func:`catch_up`."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
            return
        except TimeoutError:
            pass
        try:
            await catch_up(channels, holder, metrics)
        except Exception:  # never let the follower die: log and look again next interval
            log.exception("following the served run failed; retrying in %.1f s", interval_s)

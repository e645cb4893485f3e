"""Which run the service serves, shared by its worker processes through one small file.

Why: with ``kolfeed serve --workers N`` an admin reload reaches only the worker that accepted the
HTTP request. That worker, once the new run is loaded and swapped in, writes the run here; every
worker follows the file (a cheap ``stat`` per interval) and reloads itself when it changes, keeping
its current model if that load fails, exactly like a reload it received itself. A worker that is
(re)started reads the file first, so it serves the current run, not the one the service started with.

The file is written atomically (temp file + rename) and holds JSON
``{"run_dir": ..., "run_id": ..., "version": ..., "written_at": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from recsys.artifacts import ArtifactError
from serving.metrics import ServiceMetrics
from serving.state import ModelHolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedRun:
    run_dir: Path
    run_id: str
    version: int


class RunPointer:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    def write(self, run: ServedRun) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {
            "run_dir": str(run.run_dir),
            "run_id": run.run_id,
            "version": run.version,
            "written_at": time.time(),
        }
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)

    def read(self) -> ServedRun | None:
        """The run in the file; None when there is no file yet. A malformed file is an error."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            body = json.loads(raw)
            return ServedRun(Path(body["run_dir"]), str(body["run_id"]), int(body["version"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.path}: not a served-run pointer ({exc})") from None

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


async def follow(
    pointer: RunPointer, holder: ModelHolder, metrics: ServiceMetrics, interval_s: float, stop: asyncio.Event
) -> None:
    """Reload ``holder`` whenever the pointer names another run, until ``stop`` is set.

    A failed load is logged and the current model keeps serving; the next change is followed again."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
            return
        except TimeoutError:
            pass
        if not pointer.changed():  # the first look counts as a change: compared with what is served
            continue
        try:
            target = pointer.read()
        except ArtifactError as exc:
            log.error("served-run pointer unreadable, keeping the current model: %s", exc)
            continue
        current = holder.current
        if target is None or (current is not None and current.run_dir == target.run_dir.resolve()):
            continue
        try:
            previous, new = await holder.reload(target.run_dir)
        except ArtifactError as exc:
            metrics.reloads.labels(outcome="follow_failed").inc()
            log.error("following reload to %s failed, keeping the current model: %s", target.run_dir, exc)
            continue
        metrics.reloads.labels(outcome="followed").inc()
        metrics.model_version.set(new.version)
        log.info(
            "followed reload: now serving %s v%s (was %s)",
            new.run_id,
            new.version,
            previous.run_id if previous else None,
        )

"""Where an event log lives on disk: segment files ``events-<20-digit first seq>.log``, the writer's
``LOCK``, and the ``worker-<i>`` sub-logs of a log written by several processes; and making a
directory's entries durable (``fsync_dir``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from features.eventlog.errors import EventLogError

SEGMENT_RE = re.compile(r"^events-(\d{20})\.log$")
LOCK_FILE = "LOCK"
WORKER_PREFIX = "worker-"
WORKER_RE = re.compile(rf"^{WORKER_PREFIX}(\d+)$")


def segment_name(first_seq: int) -> str:
    return f"events-{first_seq:020d}.log"


@dataclass(frozen=True)
class Segment:
    first_seq: int
    path: Path


def list_segments(directory: Path) -> list[Segment]:
    """Segments of ``directory`` ordered by first sequence number (other files are ignored)."""
    out = []
    for name in os.listdir(directory):
        m = SEGMENT_RE.match(name)
        if m:
            out.append(Segment(int(m.group(1)), directory / name))
    out.sort(key=lambda s: s.first_seq)
    return out


def worker_dirs(directory: str | Path) -> list[Path]:
    """The ``worker-<i>`` subdirectories of ``directory`` in index order (worker-10 after worker-9)."""
    directory = Path(directory)
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            m = WORKER_RE.match(entry.name)
            if m and entry.is_dir():
                found.append((int(m.group(1)), entry.name))
    found.sort()
    return [directory / name for _, name in found]


def refuse_worker_parent(directory: Path, what: str) -> None:
    workers = worker_dirs(directory)
    if workers:
        raise EventLogError(
            f"{directory}: holds per-worker event logs ({', '.join(w.name for w in workers[:3])}"
            f"{', …' if len(workers) > 3 else ''}); {what}"
        )


def log_dirs(directory: str | Path) -> list[Path]:
    """The logs that make up the event log at ``directory``: ``[directory]`` for a plain log (one
    writer), else its ``worker-<i>`` sub-logs in index order.

    A plain log is a directory without ``worker-*`` subdirectories (possibly empty). A leftover
    ``LOCK`` or ``replay.pos`` beside worker sub-logs holds no events and is ignored; segments
    beside them are an error (two layouts mixed: which one is the log?).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EventLogError(f"{directory}: event log directory does not exist")
    workers = worker_dirs(directory)
    if not workers:
        return [directory]
    own = list_segments(directory)
    if own:
        raise EventLogError(
            f"{directory}: holds both its own segments ({own[0].path.name}, …) and per-worker event logs "
            f"({workers[0].name}, …); move the segments into a free worker-<i> directory or elsewhere"
        )
    return workers


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (new or renamed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

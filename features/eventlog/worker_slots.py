"""One sub-log per worker process (``kolfeed serve --workers N``): a log has one writer, so each
process claims the lowest free ``worker-<i>`` slot; and probing whether a log's writer lock is held."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from features.eventlog.errors import EventLogError, LogLockedError
from features.eventlog.replica import REPLICA_FILE
from features.eventlog.segments import LOCK_FILE, WORKER_PREFIX, list_segments
from features.eventlog.writer import DEFAULT_SEGMENT_BYTES, EventLog

DEFAULT_MAX_WORKERS = 64


def _lock_held(directory: Path) -> bool:
    """True when a writer holds ``directory``'s LOCK right now (probing takes it for an instant)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock, if it got it
    return False


def claim_worker_log(
    base: str | Path,
    max_workers: int = DEFAULT_MAX_WORKERS,
    *,
    fsync: bool = True,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    replica: str | None = None,
) -> tuple[int, EventLog]:
    """Open ``base/worker-<i>`` as its writer for the smallest free ``i < max_workers``.

    A slot is free when no process holds its lock, so a restarted worker takes a slot back (and
    recovers its torn tail). Raises :class:`EventLogError` when every slot is held, when ``base``
    is itself a single-writer log (has segments, or a writer holds its ``LOCK``), and
    :class:`CorruptLogError` when the free slot's log cannot be recovered (never skipped: its
    events are acknowledged ones). ``fsync``, ``segment_bytes`` and ``replica`` are passed to
    :class:`EventLog`.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    own = list_segments(base)
    if own:
        raise EventLogError(
            f"{base}: is a single-writer event log ({own[0].path.name}, …); per-worker logs go in an "
            "empty directory (or move the segments into worker-0/ first)"
        )
    for i in range(max_workers):
        directory = base / f"{WORKER_PREFIX}{i}"
        created = not directory.exists()
        try:
            event_log = EventLog(directory, fsync=fsync, segment_bytes=segment_bytes, replica=replica)
        except LogLockedError:
            continue
        if _lock_held(base):  # a single writer of base itself, racing with us
            event_log.close()
            if created:
                with contextlib.suppress(OSError):
                    (directory / LOCK_FILE).unlink()
                    (directory / REPLICA_FILE).unlink()
                    directory.rmdir()
            raise EventLogError(f"{base}: is open for writing as a single-writer event log")
        return i, event_log
    raise EventLogError(
        f"{base}: all {max_workers} worker event logs ({WORKER_PREFIX}0 … {WORKER_PREFIX}{max_workers - 1}) "
        "are held by other processes"
    )


def log_is_locked(directory: Path) -> bool:
    """Whether a writer holds ``directory``'s lock now (a free or missing directory is not locked):
    lets a second server refuse up front instead of failing inside its start-up."""
    path = Path(directory) / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

"""The replica id of an event log: which replica (host) writes it, recorded in ``REPLICA`` when the
log is created, so ``(replica, worker, seq)`` names an event for the life of the log."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from features.eventlog.errors import EventLogError
from features.eventlog.segments import fsync_dir

REPLICA_FILE = "REPLICA"
REPLICA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_replica(name: str, what: str = "replica") -> str:
    """A replica id: 1-63 characters of letters, digits, ``.``, ``_``, ``-`` (a hostname fits)."""
    if not REPLICA_RE.fullmatch(name):
        raise EventLogError(
            f"{what} {name!r}: expected 1-63 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def host_replica() -> str:
    """This host's default replica id: its hostname, cut to the allowed characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].lstrip("._-")
    return name or "localhost"


def read_replica(directory: str | Path) -> str | None:
    """The replica id recorded in a log directory (None: an older log without one)."""
    path = Path(directory) / REPLICA_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return check_replica(text, f"{path}: recorded replica id")


def record_replica(directory: Path, configured: str | None, fsync: bool) -> str:
    """Which replica writes ``directory``: recorded once, when the log is first opened.

    Why recorded: sequence numbers are per log, so ``(replica, worker, seq)`` names an event only if
    the log keeps its replica id for life, whatever the hostname of the process reopening it (a
    container gets a new one on every restart). An explicitly configured id (``--replica``,
    ``KOLFEED_REPLICA``) that differs from the recorded one is an error: this process was pointed at
    another replica's log."""
    recorded = read_replica(directory)
    if recorded is not None:
        if configured is not None and configured != recorded:
            raise EventLogError(
                f"{directory}: event log of replica {recorded!r}, but this process is replica "
                f"{configured!r}; give each replica its own log directory"
            )
        return recorded
    replica = check_replica(configured) if configured is not None else host_replica()
    tmp = directory / (REPLICA_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(replica + "\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, directory / REPLICA_FILE)
    if fsync:
        fsync_dir(directory)
    return replica

"""Store markers: the id under which a feature store knows an event log.

Why: a replayer's position ("everything up to seq N is in the store") is only true of the store it
was written against; a Redis without persistence comes back empty after a restart. Each log gets a
random id (kept in its directory); the store keeps that log's applied position under it, with the
counters (``FeatureStore.record_logged``), and ``log_intact`` tells whether it still holds it. A
store that does not must be rebuilt from the log. Both the service's outbox (:mod:`serving.outbox`)
and ``kolfeed store rebuild`` (:func:`features.replay.rebuild_store`) use it.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_FILE = "store-marker.json"


def log_marker_id(log_dir: Path) -> int:
    """A random id that names this log in the store, created once and kept in the log directory."""
    path = Path(log_dir) / MARKER_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["marker"]
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**62:
            return value
        log.warning("%s: bad marker %r; making a new one (the store will be rebuilt)", path, value)
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); making a new marker (the store will be rebuilt)", path, exc)
    value = secrets.randbelow(2**62 - 1) + 1
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"marker": value}), encoding="utf-8")
    tmp.replace(path)
    return value

"""Store markers: how a feature store shows it holds a whole event log.

Why: a replayer's position ("everything up to seq N is in the store") is only true of the store it
was written against; a Redis without persistence comes back empty after a restart. Each log gets a
random id (kept in its directory); once the store holds the whole log, an impression of that id by a
reserved user is recorded (weight 0: nothing a feed reads changes). A missing marker means the store
must be rebuilt from the log. Both the service's outbox (:mod:`serving.outbox`) and
``kolfeed store rebuild`` (:func:`features.replay.rebuild_store`) write them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path

from features.base import FeatureStore, StoreEvent

log = logging.getLogger(__name__)

MARKER_USER = 2**63 - 1
"""Reserved user id of the store markers (the largest id the API accepts; no real user has it)."""
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


async def marker_present(store: FeatureStore, marker_id: int) -> bool:
    state = await store.user_state(MARKER_USER)
    return marker_id in state.seen


async def write_marker(store: FeatureStore, marker_id: int) -> None:
    await store.record_events(
        [StoreEvent(ts=time.time(), user_id=MARKER_USER, item_id=marker_id, action="impression")]
    )

"""Where the service's reports read events from, and a short cache so a dashboard refresh is cheap.

Why one place: the experiment readout, its time series and the KOL leaderboard all need the same
events table; reading a large log on every HTTP request would be slow, and recomputing a report that
nothing changed under is waste. ``KOLFEED_EVENTS_PATH`` may be

- a ``.parquet``/``.csv`` events file;
- a world directory (holds ``events.parquet``/``.csv``; its ``items``/``kols``/``follows`` tables are
  read too, for vertical fit and followers gained);
- the service's durable event-log directory (anything else that is a directory), read with
  ``features.eventlog.load_event_log``: a plain log, or the parent of the ``worker-<i>`` logs that
  ``kolfeed serve --workers N`` writes (all of them are read, merged by ``ts``). Without
  ``KOLFEED_EVENTS_PATH`` the service's own event log (``KOLFEED_EVENT_LOG_DIR``) is used, so
  reports cover what the service (every worker) has acknowledged.

A report is computed on a dedicated worker thread (never on the event loop, never in the default pool
the event log appends use) and reused for ``cache_s`` seconds;
after that it is reused again only while the files' sizes and mtimes are unchanged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Request

from recsys.id_labels import IdLabels
from recsys.io.tables import find_table_file
from recsys.schema import EVENTS
from serving.service_state import service_state

T = TypeVar("T")
SourceKind = Literal["file", "world", "eventlog"]
WORLD_SIDE_TABLES = ("items", "kols", "follows")


class EventSourceError(RuntimeError):
    """No event source is configured, or it cannot be read (the message names the path)."""


@dataclass(frozen=True)
class EventTables:
    events: pa.Table
    items: pa.Table | None = None
    kols: pa.Table | None = None
    follows: pa.Table | None = None
    kol_labels: dict[int, str] = field(default_factory=dict)
    """{key: creator id} of the string creator ids the files spell out (an event log holds only keys:
    reports then name creators from the served run's labels)."""


def source_kind(path: Path) -> SourceKind:
    """What ``path`` holds: an events file, a world directory, or an event-log directory."""
    if path.is_file():
        return "file"
    if path.is_dir():
        return "world" if find_table_file(path, "events") is not None else "eventlog"
    raise EventSourceError(f"{path}: event source not found (KOLFEED_EVENTS_PATH)")


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Sizes and mtimes of the files holding events under ``path``: changes when events are written.

    In an event-log directory only the segments count (``LOCK``/``replay.pos`` change without new events);
    the walk is recursive, so the segments of ``worker-<i>`` sub-logs count too.
    """
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if find_table_file(path, "events") is None:
            files = [f for f in files if f.suffix == ".log"]
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:  # a segment rotated away while we looked
            continue
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _only_event_columns(table: pa.Table) -> pa.Table:
    """Keep the ``events`` schema's columns (an event log may carry more) with integral ``ts``."""
    keep = [c.name for c in EVENTS.columns if c.name in table.column_names]
    table = table.select(keep)
    if "ts" in keep and pa.types.is_floating(table.schema.field("ts").type):
        idx = table.schema.get_field_index("ts")
        table = table.set_column(idx, "ts", pc.cast(pc.floor(table["ts"]), pa.int64()))
    return table


def load_event_tables(path: Path) -> EventTables:
    """Blocking read of the configured source (raises EventSourceError with the path on failure)."""
    from recsys.io.errors import DataError
    from recsys.io.tables import load_table
    from recsys.schema import TABLES

    kind = source_kind(path)
    try:
        if kind == "file":
            result = load_table(path, EVENTS)
            return EventTables(events=result.table, kol_labels=_kol_labels(result.labels))
        if kind == "world":
            events_file = find_table_file(path, "events")
            assert events_file is not None
            events = load_table(events_file, EVENTS)
            labels = IdLabels()
            labels.update(events.labels)
            side: dict[str, pa.Table | None] = {}
            for name in WORLD_SIDE_TABLES:
                f = find_table_file(path, name)
                loaded = None if f is None else load_table(f, TABLES[name])
                side[name] = None if loaded is None else loaded.table
                if loaded is not None:
                    labels.update(loaded.labels)
            return EventTables(events=events.table, **side, kol_labels=_kol_labels(labels))
        try:
            from features.eventlog import EventLogError, load_event_log
        except ImportError as exc:
            raise EventSourceError(f"{path}: looks like an event-log directory, but {exc}") from None
        try:
            logged = load_event_log(path)
        except EventLogError as exc:  # corrupt, or mixed layouts (own segments beside worker logs)
            raise EventSourceError(f"cannot read the event log: {exc}") from None
        return EventTables(events=_only_event_columns(logged))
    except (DataError, OSError, pa.ArrowException, ValueError) as exc:
        raise EventSourceError(f"{path}: cannot read events ({exc})") from None


def _kol_labels(labels: IdLabels) -> dict[int, str]:
    keys, texts = labels.get("kol")
    return dict(zip(keys.tolist(), texts.tolist(), strict=True))


def load_costs(path: Path) -> dict[int, float]:
    """Creator costs from a CSV with columns ``kol_id,cost`` (for ROI = commission / cost), keyed by
    the creators' int64 keys (``kol_id`` may be a string id or an integer)."""
    import pyarrow.csv as pcsv

    from recsys.ids import IdError, id_keys

    try:
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(column_types={"kol_id": pa.string(), "cost": pa.float64()}),
        )
    except (pa.ArrowException, OSError) as exc:
        raise EventSourceError(f"{path}: cannot read KOL costs ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("kol_id", "cost") if c not in table.column_names]
    if missing:
        raise EventSourceError(f"{path}: KOL costs lack column(s) {', '.join(missing)}; expected kol_id,cost")
    if table["kol_id"].null_count or table["cost"].null_count:
        raise EventSourceError(f"{path}: KOL costs have empty kol_id or cost values")
    try:
        keys = id_keys(table["kol_id"], "kol_id")
    except IdError as exc:
        raise EventSourceError(f"{path}: KOL costs: {exc}") from None
    return dict(zip(keys.tolist(), table["cost"].to_pylist(), strict=True))


@dataclass
class _Entry:
    at: float
    signature: Any
    value: Any


class EventSource:
    """The configured events plus a per-report cache; safe to share between requests."""

    def __init__(
        self,
        path: Path | None,
        cache_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()  # one computation at a time: 2 cores, and no duplicate work
        self._tables: tuple[Any, EventTables] | None = None
        self._reports: dict[Hashable, _Entry] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kolfeed-reports")
        self.computations = 0
        """How many reports were computed (not served from the cache): for tests and debugging."""

    @property
    def configured(self) -> bool:
        return self.path is not None

    def _require_path(self) -> Path:
        if self.path is None:
            raise EventSourceError(
                "no event source configured: set KOLFEED_EVENTS_PATH to an events file, a world "
                "directory or the service's event-log directory"
            )
        return self.path

    def tables(self) -> EventTables:
        """Blocking: the current tables, re-read only when the files changed."""
        path = self._require_path()
        sig = _signature(path) if path.exists() else None
        if self._tables is not None and self._tables[0] == sig:
            return self._tables[1]
        tables = load_event_tables(path)
        self._tables = (sig, tables)
        return tables

    def report_sync(self, key: Hashable, compute: Callable[[EventTables], T]) -> T:
        """Blocking: the cached report for ``key``, or ``compute(tables)`` when stale."""
        path = self._require_path()
        with self._lock:
            now = self._clock()
            entry = self._reports.get(key)
            if entry is not None and now - entry.at < self.cache_s:
                value: T = entry.value
                return value
            sig = _signature(path) if path.exists() else None
            if entry is not None and entry.signature == sig and sig is not None:
                entry.at = now  # nothing changed underneath: still valid
                value = entry.value
                return value
            result = compute(self.tables())
            self.computations += 1
            self._reports[key] = _Entry(at=now, signature=sig, value=result)
            return result

    async def report(self, key: Hashable, compute: Callable[[EventTables], T]) -> T:
        """The report for ``key``, computed on this source's own worker thread.

        Not ``asyncio.to_thread``: the default pool also runs the event log's appends, and a queue of
        slow dashboard reports there would delay acknowledging events.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.report_sync, key, compute)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def configured_events_path(settings: Any) -> Path | None:
    """``events_path`` if set, else the service's own durable event log (``event_log_dir``), else None."""
    path: Path | None = settings.events_path
    if path is None:
        path = getattr(settings, "event_log_dir", None)
    return path


def event_source_for(settings: Any) -> EventSource:
    return EventSource(configured_events_path(settings), cache_s=settings.report_cache_s)


async def get_event_source(request: Request) -> EventSource:
    """The app's event source (created on first use from the settings if the lifespan did not)."""
    source: EventSource | None = service_state(request.app).event_source
    if source is None:
        source = event_source_for(service_state(request.app).settings)
        service_state(request.app).event_source = source
    return source

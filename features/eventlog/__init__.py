"""The durable, append-only local event log: the source of truth the feature store is rebuilt from.

Why: the store (memory:// or Redis) is a cache. Every event the service acknowledges is first
appended here, so a Redis outage or a process crash loses nothing, ``kolfeed store rebuild``
can recreate the store, and training can read the log as its events table.

Layout: a directory of segment files ``events-<20-digit first seq>.log`` (plus ``LOCK`` held by the
one writer, ``REPLICA`` naming the replica (host) that writes it, recorded when the log is created,
and ``replay.pos`` owned by :mod:`features.replay`). A segment is a sequence of frames::

    u32 payload length | u32 CRC32 | u64 seq | payload (compact JSON object of all StoreEvent fields)

little-endian; the CRC (``zlib.crc32``) covers length, seq and payload. Sequence numbers start at 1,
increase by one per event with no gaps, and continue across segments.

Durability: :meth:`EventLog.append_batch` writes the frames of a whole batch with one ``write()``
and then ``fdatasync``s (``fsync=True``, the default). With ``fsync=False`` the data is still handed
to the OS before returning, which survives a SIGKILL of the process but NOT a power loss or kernel
crash. :meth:`EventLog.append_prepared` appends several batches with one write and one fsync
(group commit: the service's concurrent requests share it, see :mod:`features.group_commit`).
It is a blocking call guarded by a lock: from asyncio call it as
``await asyncio.to_thread(log.append_batch, events)``. If a write or fsync fails, the log truncates
the partial batch and refuses further appends (restart to recover), so no later batch can land
behind a torn one.

Recovery (on open): the last segment is scanned; a torn or corrupt trailing record (nothing valid
after it: the usual result of a crash mid-write) is truncated, counted in :attr:`EventLog.recovery`
and logged, and the sequence continues. Corruption with valid records after it is NOT skipped: it
raises :class:`CorruptLogError` naming the segment and byte offset, because silently skipping would
drop acknowledged events from the source of truth; an operator decides (restore or cut the file).

Reading: :class:`LogReader` (no lock; safe while a writer appends) iterates ``(seq, StoreEvent)``
across the segments of ONE log and converts it to the ``recsys.schema.EVENTS`` table
(:meth:`LogReader.to_arrow_table`, :meth:`LogReader.write_parquet`).

Several writer processes (``kolfeed serve --workers N``): a log has one writer, so each process
writes its own sub-log ``<dir>/worker-<i>/``, taking the lowest free slot with
:func:`claim_worker_log` (a restarted process re-claims a free slot and recovers its torn tail).
"The service's event log" is then the parent directory: :func:`log_dirs` resolves a directory to
the logs it holds (itself, or its ``worker-*`` sub-logs in index order) and :func:`load_event_log`
reads them all into one table ordered by ``ts``. Sequence numbers are per sub-log, so there is no
global ``seq`` across workers; ``LogReader`` and ``EventLog`` refuse a directory holding worker
sub-logs, so a single-log reader cannot silently read none of them. A directory with both its own
segments and worker sub-logs is an error.

Modules: :mod:`~features.eventlog.framing` (record format, encoding, scanning),
:mod:`~features.eventlog.segments` (segment files, worker sub-log directories),
:mod:`~features.eventlog.replica` (the recorded replica id), :mod:`~features.eventlog.reader`,
:mod:`~features.eventlog.writer` (the writer and its recovery) and
:mod:`~features.eventlog.worker_slots`; this package exports their public names.
"""

from features.eventlog.errors import CorruptLogError, EventLogError, LogLockedError, LogWriteError
from features.eventlog.framing import (
    FIELDS,
    HEADER,
    MAX_PAYLOAD,
    PreparedBatch,
    decode_event,
    encode_event,
    frame,
    prepare_batch,
)
from features.eventlog.reader import (
    ARROW_CHUNK_ROWS,
    Cursor,
    LogReader,
    events_to_record_batch,
    load_event_log,
)
from features.eventlog.replica import REPLICA_FILE, check_replica, host_replica, read_replica
from features.eventlog.segments import (
    LOCK_FILE,
    WORKER_PREFIX,
    Segment,
    fsync_dir,
    list_segments,
    log_dirs,
    segment_name,
    worker_dirs,
)
from features.eventlog.worker_slots import DEFAULT_MAX_WORKERS, claim_worker_log, log_is_locked
from features.eventlog.writer import DEFAULT_SEGMENT_BYTES, EventLog, RecoveryReport

__all__ = [
    "ARROW_CHUNK_ROWS",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_SEGMENT_BYTES",
    "FIELDS",
    "HEADER",
    "LOCK_FILE",
    "MAX_PAYLOAD",
    "REPLICA_FILE",
    "WORKER_PREFIX",
    "CorruptLogError",
    "Cursor",
    "EventLog",
    "EventLogError",
    "LogLockedError",
    "LogReader",
    "LogWriteError",
    "PreparedBatch",
    "RecoveryReport",
    "Segment",
    "check_replica",
    "claim_worker_log",
    "decode_event",
    "encode_event",
    "events_to_record_batch",
    "frame",
    "fsync_dir",
    "host_replica",
    "list_segments",
    "load_event_log",
    "log_dirs",
    "log_is_locked",
    "prepare_batch",
    "read_replica",
    "segment_name",
    "worker_dirs",
]

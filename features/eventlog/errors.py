"""The event log's errors: one base class, so a caller can catch every log failure at once."""

from __future__ import annotations


class EventLogError(RuntimeError):
    """Base of every event-log error."""


class CorruptLogError(EventLogError):
    """A record that cannot be trusted with valid records after it (or a broken sequence)."""


class LogLockedError(EventLogError):
    """Another process holds the writer lock of this log directory."""


class LogWriteError(EventLogError):
    """An append failed; the log refuses further appends until it is reopened."""

"""A held event-log fsync for tests: what a slow disk looks like to a POST /v1/events.

Why shared: the acknowledgement rules (no 202 before the fsync covering the event; a request cut off
during its fsync is not acknowledged) are tested by holding the same fsync in several tests.
"""

from __future__ import annotations

import threading

import pytest

import features.eventlog.writer as eventlog_writer


class HeldFsync:
    """Replaces the writer's ``_sync_data``: ``entered`` is set when an fsync starts, which then waits
    for ``release`` (30 s at most) before syncing for real."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._real = eventlog_writer._sync_data

    def __call__(self, fd: int) -> None:
        self.entered.set()
        self.release.wait(30)
        self._real(fd)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> HeldFsync:
        monkeypatch.setattr(eventlog_writer, "_sync_data", self)
        return self

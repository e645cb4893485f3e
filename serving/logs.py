"""Structured service logs: one line per event, JSON in production, readable on a terminal.

Why here and not uvicorn's defaults: an operator greps or ships logs by ``request_id``, so every
request line carries the id the feed response returned (and the ``x-request-id`` header echoes),
and a log file must never hold a terminal's colour codes. The id lives in a context variable set
once per request by the outermost middleware, so any log line written while handling the request
carries it without passing it around.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Literal

LogFormat = Literal["json", "console"]
LOG_FORMATS: tuple[str, ...] = ("json", "console")
LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug")

ACCESS_LOGGER = "kolfeed.access"
REQUEST_ID_HEADER = b"x-request-id"
MAX_INCOMING_ID = 64

_request_id: ContextVar[str | None] = ContextVar("kolfeed_request_id", default=None)

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "rid",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}


def current_request_id() -> str | None:
    """The id of the request being handled (None outside a request)."""
    return _request_id.get()


def start_request(incoming: bytes | None) -> str:
    """Set the request id for this request: the caller's ``x-request-id`` when it is a short printable
    token, else a fresh one (:func:`new_request_id`). Returns it."""
    rid = None
    if incoming and len(incoming) <= MAX_INCOMING_ID:
        text = incoming.decode("latin-1")
        if text.isprintable() and " " not in text:
            rid = text
    if rid is None:
        rid = new_request_id()
    _request_id.set(rid)
    return rid


def _reseed() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count(1)


_id_prefix = ""
_id_counter = itertools.count(1)
_reseed()
os.register_at_fork(after_in_child=_reseed)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """A fresh id: 32 lowercase hex characters (as a uuid4's hex), a random 64-bit prefix drawn once
    per process followed by a counter. Why not uuid4: it costs a ``getrandom`` system call and a
    UUID object per request, a measurable share of a one-event POST; ids only need to be unique."""
    return f"{_id_prefix}{next(_id_counter):016x}"


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO-8601 UTC, ms), level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger [request_id] message``; plain text, no escape codes."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(rid)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        return super().format(record)


def default_format() -> LogFormat:
    """``console`` on a terminal, ``json`` otherwise (a file or a log shipper)."""
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(fmt: LogFormat, level: str = "info") -> None:
    """Route every logger (ours and uvicorn's) through one stderr handler in ``fmt`` at ``level``.

    uvicorn's own access log is replaced by :data:`ACCESS_LOGGER` lines (method, path, status,
    duration, request_id), written by the metrics middleware."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(LOG_FORMATS)}")
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


access_log = logging.getLogger(ACCESS_LOGGER)


def log_access(method: str, path: str, status: int, seconds: float) -> None:
    """One access line per request (INFO), with the request id from the context."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "%s %s %d %.2fms",
            method,
            path,
            status,
            seconds * 1000.0,
            extra={"method": method, "path": path, "status": status, "ms": round(seconds * 1000.0, 3)},
        )

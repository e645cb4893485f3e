"""The event log's record format: one event as compact JSON, framed as
``u32 payload length | u32 CRC32 | u64 seq | payload`` (little-endian; the CRC covers length, seq and
payload), and the scanning of a segment file frame by frame.

Why a module of its own: the reader, the writer's recovery and the export all agree on this one
format; validation and encoding of a batch (``prepare_batch``) happen here, before the writer's lock.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.base import StoreEvent
from features.eventlog.errors import CorruptLogError
from features.layout import validate_events

HEADER = struct.Struct("<IIQ")  # payload length, crc32, seq
_CRC_PREFIX = struct.Struct("<IQ")  # what the CRC covers besides the payload: length, seq
MAX_PAYLOAD = 1 << 20
"""Upper bound of one encoded event; a larger length field can only be corruption."""
FIELDS: tuple[str, ...] = (
    "ts",
    "user_id",
    "item_id",
    "action",
    "kol_id",
    "post_id",
    "to_user_id",
    "category",
    "value",
    "request_id",
)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_event(ev: StoreEvent) -> bytes:
    """Compact JSON of every field, with numbers normalised (numpy scalars become plain numbers)."""
    obj = {
        "ts": float(ev.ts),
        "user_id": int(ev.user_id),
        "item_id": int(ev.item_id),
        "action": str(ev.action),
        "kol_id": _opt_int(ev.kol_id),
        "post_id": _opt_int(ev.post_id),
        "to_user_id": _opt_int(ev.to_user_id),
        "category": None if ev.category is None else str(ev.category),
        "value": float(ev.value),
        "request_id": None if ev.request_id is None else str(ev.request_id),
    }
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def decode_event(payload: bytes, where: str) -> StoreEvent:
    try:
        obj = json.loads(payload)
        if not isinstance(obj, dict):
            raise ValueError("payload is not a JSON object")
        unknown = set(obj) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        return StoreEvent(**obj)
    except (ValueError, TypeError) as exc:
        raise CorruptLogError(f"{where}: record does not decode to an event: {exc}") from None


def _crc(length: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(length, seq)))


def frame(seq: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), _crc(len(payload), seq, payload), seq) + payload


@dataclass(frozen=True)
class PreparedBatch:
    """A validated batch encoded for the log; only sequence numbers are missing (the writer assigns
    them). Preparing outside the writer lets one invalid request fail alone in a group commit."""

    payloads: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.payloads)


def prepare_batch(events: Iterable[StoreEvent]) -> PreparedBatch:
    """Validate and encode ``events``; raises :class:`features.errors.InvalidEventError` (unknown
    action, non-finite ts) or ValueError (an event too large) and then nothing may be written."""
    batch = list(events)
    validate_events(batch)
    payloads = tuple(encode_event(ev) for ev in batch)
    for i, p in enumerate(payloads):
        if len(p) > MAX_PAYLOAD:
            raise ValueError(f"event #{i} encodes to {len(p)} bytes (> {MAX_PAYLOAD})")
    return PreparedBatch(payloads)


class BadFrame(Exception):
    def __init__(self, offset: int, reason: str, incomplete: bool) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.incomplete = incomplete
        """True when the frame runs past the end of the file (a write still in flight or torn)."""


def scan_frames(f: Any, offset: int, size: int, expected_seq: int) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (seq, frame offset, end offset, payload) from ``offset``; raise BadFrame at a bad one.

    ``f`` must be positioned at ``offset``; ``size`` is the file size when the scan started.
    """
    while offset < size:
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise BadFrame(offset, "incomplete header", incomplete=True)
        length, crc, seq = HEADER.unpack(head)
        if length == 0 or length > MAX_PAYLOAD:
            raise BadFrame(offset, f"implausible record length {length}", incomplete=False)
        end = offset + HEADER.size + length
        if end > size:
            raise BadFrame(offset, f"record of {length} bytes runs past the end of the file", True)
        payload = f.read(length)
        if len(payload) < length:
            raise BadFrame(offset, "record truncated while reading", incomplete=True)
        if _crc(length, seq, payload) != crc:
            raise BadFrame(offset, "CRC mismatch", incomplete=False)
        if seq != expected_seq:
            raise BadFrame(offset, f"sequence number {seq}, expected {expected_seq}", incomplete=False)
        yield seq, offset, end, payload
        offset = end
        expected_seq = seq + 1


def valid_frame_after(path: Path, bad_offset: int, min_seq: int) -> int | None:
    """Offset of a valid record (seq >= ``min_seq``) after ``bad_offset``, or None (a torn tail)."""
    with open(path, "rb") as f:
        f.seek(bad_offset)
        data = f.read()
    n = len(data)
    for i in range(1, n - HEADER.size + 1):
        length, crc, seq = HEADER.unpack_from(data, i)
        if length == 0 or length > MAX_PAYLOAD or i + HEADER.size + length > n or seq < min_seq:
            continue
        if _crc(length, seq, data[i + HEADER.size : i + HEADER.size + length]) == crc:
            return bad_offset + i
    return None

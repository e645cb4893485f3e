"""Timestamps as a shop exports them (unix seconds, milliseconds, microseconds or ISO-8601 text)
turned into the int64 unix seconds every table stores.

Why detect once per file: a column is written by one system in one unit, so the unit is decided from
the first values seen and then applied to the whole file; a value that lands outside
:data:`PLAUSIBLE` after conversion is a bad row, not a reason to guess again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SECONDS, MILLISECONDS, MICROSECONDS, ISO = (
    "unix seconds",
    "unix milliseconds",
    "unix microseconds",
    "ISO-8601",
)
TYPED = "a date/time column"
"""Parquet (or Arrow) timestamp and date columns carry their own unit."""
FORMATS: tuple[str, ...] = (SECONDS, MILLISECONDS, MICROSECONDS, ISO, TYPED)
PLAUSIBLE = (631_152_000, 4_102_444_800)
"""1990-01-01 .. 2100-01-01 UTC: converted timestamps outside this range are bad rows."""
_DIVISOR = {SECONDS: 1, MILLISECONDS: 1_000, MICROSECONDS: 1_000_000}
_NUMBER = r"^\s*-?[0-9]+(\.[0-9]*)?\s*$"
_ZONE = r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"


def _is_text(values: pa.Array) -> bool:
    return pa.types.is_string(values.type) or pa.types.is_large_string(values.type)


def detect_format(values: pa.Array) -> str | None:
    """The unit of a timestamp column from its values (None: no non-null value to judge by)."""
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return TYPED
    present = values.drop_null()
    if len(present) == 0:
        return None
    if _is_text(present):
        numeric = pc.match_substring_regex(present, _NUMBER)
        if pc.all(numeric).as_py():
            present = pc.cast(pc.utf8_trim_whitespace(present), pa.float64())
        elif pc.any(numeric).as_py():
            present = pc.cast(pc.utf8_trim_whitespace(present.filter(numeric)), pa.float64())
        else:
            return ISO
    magnitude = float(np.median(np.abs(np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.float64))))
    if magnitude < 1e11:
        return SECONDS
    if magnitude < 1e14:
        return MILLISECONDS
    return MICROSECONDS


def _iso_one(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _iso_seconds(text: pa.Array) -> pa.Array:
    """ISO-8601 strings to int64 seconds (UTC when no zone is given); unparsable entries null."""
    trimmed = pc.utf8_trim_whitespace(text)
    zoned = pc.fill_null(pc.match_substring_regex(trimmed, _ZONE), False)
    try:
        with_zone = pc.cast(trimmed.filter(zoned), pa.timestamp("ns", tz="UTC"))
        without = pc.cast(trimmed.filter(pc.invert(zoned)), pa.timestamp("ns"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # some value is not in arrow's ISO subset: parse each distinct value with Python's parser
        encoded = pc.dictionary_encode(trimmed)
        lookup = pa.array([_iso_one(v) for v in encoded.dictionary.to_pylist()], pa.int64())
        return pc.take(lookup, encoded.indices)
    out = np.zeros(len(text), dtype=np.int64)
    mask = np.asarray(zoned.to_numpy(zero_copy_only=False), dtype=bool)
    valid = np.asarray(pc.is_valid(trimmed).to_numpy(zero_copy_only=False), dtype=bool)
    out[mask] = pc.cast(with_zone, pa.int64()).fill_null(0).to_numpy() // 1_000_000_000
    out[~mask] = pc.cast(without, pa.int64()).fill_null(0).to_numpy() // 1_000_000_000
    return pa.array(out, mask=~valid)


def to_unix_seconds(values: pa.Array, fmt: str) -> tuple[pa.Array, np.ndarray]:
    """int64 seconds (bad entries null) and the mask of entries present but unusable (unparsable,
    or outside :data:`PLAUSIBLE` once converted with ``fmt``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    present = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        seconds = pc.cast(pc.cast(values, pa.timestamp("s", tz="UTC"), safe=False), pa.int64())
    elif fmt == ISO:
        seconds = _iso_seconds(values if _is_text(values) else pc.cast(values, pa.string()))
    else:
        if _is_text(values):
            numeric = pc.fill_null(pc.match_substring_regex(values, _NUMBER), False)
            number = pc.cast(pc.utf8_trim_whitespace(pc.if_else(numeric, values, None)), pa.float64())
        else:
            number = pc.cast(values, pa.float64())
        seconds = pc.cast(pc.floor(pc.divide(number, float(_DIVISOR[fmt]))), pa.int64(), safe=False)
    arr = np.asarray(pc.fill_null(seconds, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    ok = np.asarray(pc.is_valid(seconds).to_numpy(zero_copy_only=False), dtype=bool)
    ok &= (arr >= PLAUSIBLE[0]) & (arr < PLAUSIBLE[1])
    bad = present & ~ok
    return pa.array(arr, mask=~ok), bad


def parse_one(text: str, what: str = "timestamp") -> int:
    """One timestamp given on a command line (``--split-at``): seconds, milliseconds or ISO-8601."""
    arr = pa.array([text])
    fmt = detect_format(arr)
    assert fmt is not None
    seconds, bad = to_unix_seconds(arr, fmt)
    if bad[0] or not seconds[0].is_valid:
        raise ValueError(f"{what} {text!r} is not a unix time (seconds or milliseconds) nor ISO-8601")
    return int(seconds[0].as_py())


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Timestamps as shops write them become unix seconds; the unit is detected from the values."""

from __future__ import annotations

import pyarrow as pa
import pytest

from recsys.io.timestamps import (
    ISO,
    MICROSECONDS,
    MILLISECONDS,
    SECONDS,
    detect_format,
    parse_one,
    to_unix_seconds,
)

T = 1704164645  # 2024-01-02T03:04:05Z


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        ([T, T + 1], SECONDS),
        ([str(T * 1000 + 123), str(T * 1000)], MILLISECONDS),
        ([T * 1_000_000], MICROSECONDS),
        (["2024-01-02T03:04:05Z", "2024-01-02T04:04:05.123+01:00", "2024-01-02 03:04:05.5"], ISO),
    ],
)
def test_each_unit_is_detected_and_converted_to_seconds(values: list[object], unit: str) -> None:
    arr = pa.array(values)
    assert detect_format(arr) == unit
    seconds, bad = to_unix_seconds(arr, unit)
    assert not bad.any()
    assert set(seconds.to_pylist()) <= {T, T + 1}


def test_unparsable_and_implausible_values_are_bad_and_nulls_are_not() -> None:
    arr = pa.array(["2024-01-02T03:04:05Z", "yesterday", None, "1899-01-01"])
    seconds, bad = to_unix_seconds(arr, detect_format(arr) or ISO)
    assert seconds.to_pylist() == [T, None, None, None]
    assert bad.tolist() == [False, True, False, True]


def test_a_command_line_time_may_be_seconds_milliseconds_or_iso() -> None:
    assert parse_one(str(T)) == parse_one(str(T * 1000)) == parse_one("2024-01-02T03:04:05Z") == T
    with pytest.raises(ValueError, match="not a unix time"):
        parse_one("soon")

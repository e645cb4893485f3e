"""Columns of an events table as numpy, in one place: ids with nulls as ``NO_ID``, actions as codes.

Why: training's graphs, the experiment readout and KOL attribution all read the same event columns;
one conversion keeps their null handling and action vocabulary identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from recsys.schema import ACTION_NAMES, NO_ID


class EventTableError(ValueError):
    """An events table lacks a column or holds a value that cannot be interpreted."""


def id_column(values: Any, name: str) -> np.ndarray:
    """int64 ids from a pyarrow column or any array-like; nulls/None become ``NO_ID``."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return np.asarray(values.fill_null(NO_ID).to_numpy(zero_copy_only=False), dtype=np.int64)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([NO_ID if v is None else v for v in arr.tolist()], dtype=np.int64)
    try:
        return arr.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise EventTableError(f"events column {name!r}: not integer ids ({exc})") from None


def action_codes(values: Any) -> np.ndarray:
    """int64 codes (positions in ``recsys.schema.ACTIONS``) from action names or codes."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = np.asarray(values.to_numpy(zero_copy_only=False))
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        codes = arr.astype(np.int64)
        bad = (codes < 0) | (codes >= len(ACTION_NAMES))
        if bad.any():
            raise EventTableError(f"events column 'action': code {int(codes[bad][0])} out of range")
        return codes
    names = np.array(ACTION_NAMES)
    order = np.argsort(names)
    sorted_names = names[order]
    strs = arr.astype(str)
    pos = np.clip(np.searchsorted(sorted_names, strs), 0, len(names) - 1)
    ok = sorted_names[pos] == strs
    if not ok.all():
        row = int(np.argmax(~ok))
        raise EventTableError(
            f"events column 'action': unknown action {str(strs[row])!r} at row {row}; "
            f"expected one of {', '.join(ACTION_NAMES)}"
        )
    return order[pos].astype(np.int64)

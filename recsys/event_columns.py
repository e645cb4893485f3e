"""Columns of an events table as numpy, in one place: ids with nulls as ``NO_ID``, actions as codes,
and :class:`EventColumns`, the columnar view the experiment readout and KOL attribution group by.

Why: training's graphs, the experiment readout and KOL attribution all read the same event columns;
one conversion keeps their null handling and action vocabulary identical. ``EventColumns`` converts
a pyarrow table (or a dict of arrays from a test or simulator) once, with nulls mapped to sentinels
(ids → ``NO_ID``, ``value`` → NaN, ``request_id`` → ``None``), so the reports carry no null handling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import pyarrow as pa

from recsys.schema import ACTION_CODE, ACTION_NAMES, EVENTS, NO_ID


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


IMPRESSION = ACTION_CODE["impression"]
CLICK = ACTION_CODE["click"]
SHARE = ACTION_CODE["share"]
BUY = ACTION_CODE["buy"]


@dataclass
class EventColumns:
    """One event per position, column by column: THE event structure of training's graphs, the
    experiment readout, KOL attribution and the simulated world (which adds its request columns in
    ``recsys.world.event_simulator.EventChunk``). Absent ids are ``NO_ID``, absent values NaN."""

    ts: np.ndarray
    """int64 unix seconds."""
    user_id: np.ndarray
    """int64 id keys (``recsys.ids``), like every ``*_id`` column."""
    item_id: np.ndarray
    action: np.ndarray
    """int8 action codes (positions in ``recsys.schema.ACTIONS``)."""
    post_id: np.ndarray
    """int64, ``NO_ID`` where null."""
    kol_id: np.ndarray
    to_user_id: np.ndarray
    value: np.ndarray
    """float64, NaN where null."""
    request_id: np.ndarray | None = None
    """object array of ``str`` or ``None``; None when not read (:meth:`from_table` with
    ``strict=False``) or kept elsewhere (the world numbers its requests)."""

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def from_table(
        cls, table: pa.Table | Mapping[str, Any] | EventColumns, *, strict: bool = True
    ) -> EventColumns:
        """Accept a pyarrow Table (``recsys.schema.EVENTS`` columns) or a mapping of column → array.

        In a mapping, ``action`` may hold names or codes; nullable columns may be omitted (all null).
        ``strict`` (the reports): ts, user_id, item_id and action are required, an unknown column is
        an error, and request ids are read. Otherwise (training's graphs, whose tables were checked
        upstream) only ``action`` is required, other columns are ignored and ``request_id`` is None.
        """
        if isinstance(table, EventColumns):
            return table
        names = table.column_names if isinstance(table, pa.Table) else list(table.keys())
        required = ("ts", "user_id", "item_id", "action") if strict else ("action",)
        missing = [c for c in required if c not in names]
        if missing:
            raise EventTableError(f"events table lacks column(s) {', '.join(missing)}")
        unknown = [c for c in names if c not in EVENTS.column_names]
        if strict and unknown:
            raise EventTableError(f"events table has unknown column(s) {', '.join(unknown)}")

        def col(name: str) -> Any:
            return table[name]

        ts = id_column(col("ts"), "ts") if "ts" in names else None
        action = action_codes(col("action")).astype(np.int8)
        n = len(ts) if ts is not None else len(action)
        out: dict[str, Any] = {"action": action}
        out["ts"] = ts if ts is not None else np.full(n, NO_ID, dtype=np.int64)
        for name in ("user_id", "item_id", "post_id", "kol_id", "to_user_id"):
            out[name] = id_column(col(name), name) if name in names else np.full(n, NO_ID, dtype=np.int64)
        if "value" in names:
            v = col("value")
            if isinstance(v, pa.ChunkedArray | pa.Array):
                out["value"] = np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.float64)
            else:
                out["value"] = np.array(
                    [np.nan if x is None else x for x in np.asarray(v).tolist()], dtype=np.float64
                )
        else:
            out["value"] = np.full(n, np.nan)
        if not strict:
            out["request_id"] = None
        elif "request_id" in names:
            r = col("request_id")
            seq = r.to_pylist() if isinstance(r, pa.ChunkedArray | pa.Array) else list(r)
            req = np.empty(n, dtype=object)
            req[:] = [None if x is None else str(x) for x in seq]
            out["request_id"] = req
        else:
            out["request_id"] = np.full(n, None, dtype=object)
        for name, arr in out.items():
            if arr is not None and len(arr) != n:
                raise EventTableError(f"events column {name!r} has {len(arr)} rows, expected {n}")
        return cls(**out)

    def take(self, idx: np.ndarray | slice) -> Self:
        """The events at ``idx`` (a mask, positions or a slice), every column alike."""
        cols: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            cols[f.name] = None if v is None else v[idx]
        return type(self)(**cols)

    def select(self, mask: np.ndarray) -> Self:
        return self.take(mask)

    @classmethod
    def concat(cls, parts: Sequence[Self]) -> Self:
        """The events of ``parts`` one after the other (a column None in any part is None)."""
        out: dict[str, Any] = {}
        for f in fields(cls):
            cols = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(c is None for c in cols) else np.concatenate(cols)
        return cls(**out)

    def in_window(self, start_ts: int | None, stop_ts: int | None) -> np.ndarray:
        """Mask of events with ``start_ts <= ts < stop_ts`` (open ends when ``None``)."""
        mask = np.ones(len(self.ts), dtype=bool)
        if start_ts is not None:
            mask &= self.ts >= start_ts
        if stop_ts is not None:
            mask &= self.ts < stop_ts
        return mask

    def to_table(self, request_id: pa.Array) -> pa.Table:
        """As a ``recsys.schema.EVENTS`` table: ``NO_ID`` (any negative id) and NaN become nulls,
        actions their names; ``request_id`` is given (the world derives it from its request columns)."""
        names = np.array(ACTION_NAMES)

        def nullable(ids: np.ndarray) -> pa.Array:
            return pa.array(ids, pa.int64(), mask=ids < 0)

        cols = {
            "ts": pa.array(self.ts, pa.int64()),
            "user_id": pa.array(self.user_id, pa.int64()),
            "item_id": pa.array(self.item_id, pa.int64()),
            "action": pa.array(names[self.action.astype(np.int64)], pa.string()),
            "post_id": nullable(self.post_id),
            "kol_id": nullable(self.kol_id),
            "to_user_id": nullable(self.to_user_id),
            "request_id": request_id,
            "value": pa.array(self.value, pa.float64(), mask=np.isnan(self.value)),
        }
        return pa.table(cols, schema=EVENTS.arrow_schema())

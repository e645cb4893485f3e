"""A hand-made event log with known attribution answers: direct buys, a two-hop share cascade, a
buy with no creator anywhere and one with no request id (shared by the attribution and report tests)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from recsys.schema import EVENTS

T0 = 1_704_067_200
A, B, C, D, E, F = 1, 2, 3, 4, 5, 6

# (user, item, action, post, kol, to_user, request_id, value) in file order; share numbers count shares.
ROWS: list[tuple[int, int, str, int | None, int | None, int | None, str | None, float | None]] = [
    (A, 10, "impression", 100, 7, None, "r1", None),
    (A, 10, "click", 100, 7, None, "r1", None),
    (A, 10, "buy", 100, 7, None, "r1", 20.0),  # direct buy from the feed
    (A, 10, "share", 100, 7, B, "r1", None),  # share #0: A -> B
    (B, 10, "impression", 100, 7, None, "s0", None),  # depth 1
    (B, 10, "share", 100, 7, C, "s0", None),  # share #1: B -> C (depth 1)
    (C, 10, "impression", 100, 7, None, "s1", None),  # depth 2
    (C, 10, "buy", None, None, None, "s1", 30.0),  # depth 2; no kol on the row: inherited from share #1
    (D, 11, "impression", 101, 8, None, "r2", None),
    (D, 11, "buy", 101, 8, None, "r2", 5.0),
    (E, 12, "buy", None, None, None, "r3", 12.0),  # no KOL anywhere: unattributed
    (F, 11, "buy", 101, 8, None, None, None),  # no request id: unknown path; null value = 0 GMV
]


def events_table(rows: Sequence[tuple[object, ...]] = ROWS, t0: int = T0) -> pa.Table:
    names = ("user_id", "item_id", "action", "post_id", "kol_id", "to_user_id", "request_id", "value")
    cols: dict[str, list[object]] = {"ts": [t0 + i for i in range(len(rows))]}
    for j, name in enumerate(names):
        cols[name] = [r[j] for r in rows]
    return pa.table(cols, schema=EVENTS.arrow_schema())

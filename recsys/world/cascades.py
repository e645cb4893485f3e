"""Reconstruct share cascades from the events table alone (the scheme is in ``generate``'s docstring).

Why here: the generator's request-id convention is only useful if it is provably followable; tests
and the later attribution report use this one implementation.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.world.config import WorldError


def cascade_depths(events: pa.Table) -> np.ndarray:
    """Per event row: 0 for feed-reached events, 1 + depth of the share it came through otherwise.

    ``events`` must be in file order (``events.parquet``, or train followed by test).
    """
    action = events.column("action")
    req = events.column("request_id").fill_null("")
    share_rows = np.flatnonzero(pc.equal(action, "share").to_numpy(zero_copy_only=False))
    kind = pc.utf8_slice_codeunits(req, 0, 1).to_numpy(zero_copy_only=False)
    n = events.num_rows
    depth = np.full(n, -1, dtype=np.int64)
    depth[kind == "r"] = 0
    s_rows = np.flatnonzero(kind == "s")
    if s_rows.size == 0:
        return depth
    num = pc.cast(pc.utf8_slice_codeunits(req.take(pa.array(s_rows)), 1), pa.int64()).to_numpy()
    if int(num.max()) >= share_rows.size:
        raise WorldError(f"request_id s{int(num.max())} refers to a share event that does not exist")
    parent = share_rows[num]
    if np.any(parent >= s_rows):
        raise WorldError("a share-received event precedes the share it came through")
    for _ in range(s_rows.size):
        todo = depth[s_rows] < 0
        if not todo.any():
            break
        pd = depth[parent[todo]]
        ready = pd >= 0
        if not ready.any():
            raise WorldError("share chain does not lead back to a feed request")
        idx = s_rows[todo][ready]
        depth[idx] = pd[ready] + 1
    return depth

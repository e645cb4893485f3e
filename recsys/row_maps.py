"""The two lookup structures every run-time table is built from: ``IdMap`` (id key → dense row) and
``Csr`` (row → variable-length list of ints, optionally with values).

Why a module of their own: the feed ranker indexes them per request, the model loader builds them
from the run's tables, and the synthetic world builds its graphs with the same builder, so they
belong to none of those; here they are plain numpy, without Python objects per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.artifacts import ArtifactError

EMPTY_I64 = np.zeros(0, dtype=np.int64)
"""A shared empty int64 array (never written to): what an absent row or list reads as."""
EMPTY_F32 = np.zeros(0, dtype=np.float32)
"""A shared empty float32 array (never written to)."""

SHORT_LIST = 16
"""Id lists up to this long are looked up one by one in Python: cheaper than numpy's per-call cost."""


class IdMap:
    """An id key (recsys/ids.py) → dense row via a sorted copy and searchsorted (vectorised, -1 if absent).

    Public: the model's id maps (users, items, creators, posts) are read by the ranker, the service and
    the tests alike."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self._order = np.argsort(self.ids, kind="stable").astype(np.int64)
        self._sorted = self.ids[self._order]
        if len(self._sorted) > 1 and (np.diff(self._sorted) == 0).any():
            dup = int(self._sorted[1:][np.diff(self._sorted) == 0][0])
            raise ArtifactError(f"duplicate id {dup} in an id map")
        n = len(self._sorted)
        # ids that are one contiguous range (generated worlds, re-indexed datasets): arithmetic, no search
        self._base: int | None = None
        self._identity = False
        """Contiguous ids already in ascending order: row = id - base, no ``_order`` lookup."""
        if n and int(self._sorted[-1]) - int(self._sorted[0]) == n - 1:
            self._base = int(self._sorted[0])
            self._identity = bool((self._order == np.arange(n)).all())

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray | list[int]) -> np.ndarray:
        if isinstance(ids, list) and len(ids) <= SHORT_LIST:
            return np.array([self.row(i) for i in ids], dtype=np.int64)
        return self._rows_array(ids)

    def _rows_array(self, ids: np.ndarray | list[int]) -> np.ndarray:
        try:
            q = np.asarray(ids, dtype=np.int64).reshape(-1)
        except OverflowError:  # an id outside int64 cannot be in the map
            q = np.array([i if -(2**63) <= i < 2**63 else -(2**63) for i in ids], dtype=np.int64)
        n = len(self._sorted)
        if n == 0 or len(q) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        if self._base is not None:
            pos = q - self._base
            # one unsigned compare is 0 <= pos < n; per-request id lists are short, so the few
            # numpy calls (not the arithmetic) are the cost: all-found skips the masking
            found = pos.view(np.uint64) < n
            if found.all():
                return pos if self._identity else self._order[pos]
            return np.where(found, self._order[np.where(found, pos, 0)], -1)
        pos = np.searchsorted(self._sorted, q)
        pos = np.minimum(pos, n - 1)
        found = self._sorted[pos] == q
        return np.where(found, self._order[pos], -1)

    def row(self, id_: int) -> int:
        """One id, without array round trips (a request looks its user up twice)."""
        n = len(self._sorted)
        try:
            key = int(id_)
        except (TypeError, ValueError, OverflowError):
            return int(self._rows_array([id_])[0])
        if n == 0 or not -(2**63) <= key < 2**63:
            return -1
        if self._base is not None:
            pos = key - self._base
            if not 0 <= pos < n:
                return -1
            return pos if self._identity else int(self._order[pos])
        at = int(np.searchsorted(self._sorted, key))
        if at < n and int(self._sorted[at]) == key:
            return int(self._order[at])
        return -1


@dataclass
class Csr:
    """Row → variable-length int64 list, stored as indptr/indices (no per-row Python objects)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None = None

    @classmethod
    def empty(cls, n_rows: int) -> Csr:
        return cls(np.zeros(n_rows + 1, dtype=np.int64), EMPTY_I64.copy(), EMPTY_F32.copy())

    @classmethod
    def build(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        n_rows: int,
        values: np.ndarray | None = None,
        *,
        sort_cols: bool = False,
    ) -> Csr:
        """Group ``cols`` by ``rows``; within a row the order of ``values`` descending, else ``cols``
        ascending with ``sort_cols``, else input order."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if values is not None:
            values = np.asarray(values, dtype=np.float32)
            order = np.lexsort((-values, rows))
        elif sort_cols:
            order = np.lexsort((cols, rows))
        else:
            order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols[order], None if values is None else values[order])

    def get(self, row: int) -> np.ndarray:
        if row < 0 or row + 1 >= len(self.indptr):
            return EMPTY_I64
        return self.indices[self.indptr[row] : self.indptr[row + 1]]

    def get_values(self, row: int) -> np.ndarray:
        if self.values is None or row < 0 or row + 1 >= len(self.indptr):
            return EMPTY_F32
        return self.values[self.indptr[row] : self.indptr[row + 1]]

    @staticmethod
    def expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner position, entry index) of spans of ``lens`` entries starting at ``starts``."""
        total = int(np.add.reduce(lens)) if len(lens) else 0
        if total == 0:
            return EMPTY_I64, EMPTY_I64
        owner = np.arange(len(lens), dtype=np.int64).repeat(lens)
        # entry = start of its row + position within the row = arange(total) + (start - row's offset)
        shift = starts - lens.cumsum() + lens
        return owner, np.arange(total, dtype=np.int64) + shift[owner]

    def heads(self, rows: list[int], k: int) -> np.ndarray:
        """``indices`` of the first ``k`` entries of each of ``rows`` (a few), concatenated in order.

        Slices per row: taking k of each row's often hundred entries beats a full ``gather``."""
        n_rows = len(self.indptr) - 1
        if k <= 0:
            return EMPTY_I64
        indptr, indices = self.indptr, self.indices
        parts = []
        for r in rows:
            if 0 <= r < n_rows:
                a = indptr.item(r)
                parts.append(indices[a : min(a + k, indptr.item(r + 1))])
        if not parts:
            return EMPTY_I64
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

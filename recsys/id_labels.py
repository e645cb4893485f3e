"""The labels of hashed external ids, per kind, gathered while loading data.

Why: inside the code every id is an int64 key (:mod:`recsys.ids`); a string id's key is a hash,
so its text must travel beside the data to be printed again (feed entries, reports). Loaders add
the (key, label) pairs they see; a run directory keeps those of the ids it serves
(``labels.parquet``). Only hashed keys (< 0) are held: an integer id is its own label.

Labels are kept as an Arrow string array (a million UUIDs take ~40 MB, not the ~150 MB of a numpy
unicode array). Every merge checks that no two distinct labels of one kind share a key
(:func:`recsys.ids.check_collisions`'s rule), so a collision is refused when the data is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.ids import IdError, key_label

_NO_KEYS = np.zeros(0, dtype=np.int64)
_NO_LABELS = pa.array([], pa.string())

Labels: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | Iterable[str]
"""Label texts: an Arrow string array, a numpy array of strings or any iterable of str."""


def _as_strings(labels: Labels) -> pa.Array:
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    if isinstance(labels, pa.Array):
        return labels if labels.type == pa.string() else pc.cast(labels, pa.string())
    if isinstance(labels, np.ndarray):
        return pa.array(labels.astype(str), pa.string())
    return pa.array(list(labels), pa.string())


@dataclass
class IdLabels:
    """``{kind: (keys, labels)}`` with keys sorted, unique and all < 0; labels aligned with them."""

    pairs: dict[str, tuple[np.ndarray, pa.Array]] = field(default_factory=dict)

    def add(self, kind: str, keys: np.ndarray, labels: Labels) -> None:
        """Add (key, label) pairs of ``kind``; non-hashed keys are ignored, repeats kept once.
        Raises :class:`recsys.ids.IdError` if two distinct labels share a key."""
        keys = np.asarray(keys, dtype=np.int64)
        texts = _as_strings(labels)
        if len(keys) != len(texts):
            raise ValueError(f"{kind}: {len(keys)} keys but {len(texts)} labels")
        hashed = keys < 0
        if not hashed.any():
            return
        if not hashed.all():
            keys, texts = keys[hashed], texts.filter(pa.array(hashed))
        old_keys, old_texts = self.pairs.get(kind, (_NO_KEYS, _NO_LABELS))
        all_keys = np.concatenate([old_keys, keys])
        all_texts = pa.concat_arrays([old_texts, texts]) if len(old_keys) else texts
        order = np.argsort(all_keys, kind="stable")
        sorted_keys = all_keys[order]
        repeat = sorted_keys[1:] == sorted_keys[:-1]
        if repeat.any():
            at = np.flatnonzero(repeat)
            first = all_texts.take(pa.array(order[at]))
            second = all_texts.take(pa.array(order[at + 1]))
            clash = np.asarray(pc.not_equal(first, second).to_numpy(zero_copy_only=False), dtype=bool)
            if clash.any():
                i = int(np.argmax(clash))
                raise IdError(
                    f"{kind} id: ids {first[i].as_py()!r} and {second[i].as_py()!r} hash to the same key; "
                    "rename one"
                )
        keep = np.ones(len(sorted_keys), dtype=bool)
        keep[1:] = ~repeat
        self.pairs[kind] = (sorted_keys[keep], all_texts.take(pa.array(order[keep])))

    def update(self, other: IdLabels) -> None:
        """Merge every kind of ``other`` into this one (collisions raise, as in :meth:`add`)."""
        for kind, (keys, texts) in other.pairs.items():
            self.add(kind, keys, texts)

    def get(self, kind: str) -> tuple[np.ndarray, pa.Array]:
        """(keys, labels) of one kind; empty arrays when none is known."""
        return self.pairs.get(kind, (_NO_KEYS, _NO_LABELS))

    def restricted(self, kind: str, keys: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        """(keys, labels) of ``kind`` for the hashed keys among ``keys`` that have a label."""
        known, texts = self.get(kind)
        wanted = np.isin(known, np.asarray(keys, dtype=np.int64))
        return known[wanted], texts.filter(pa.array(wanted))

    def label(self, kind: str, key: int) -> str:
        """The external id of ``key`` (its decimal string for integer ids)."""
        known, texts = self.get(kind)
        pos = int(np.searchsorted(known, key))
        if pos < len(known) and known[pos] == key:
            return str(texts[pos].as_py())
        return key_label(int(key))

    def labels_of(self, kind: str, keys: np.ndarray) -> list[str]:
        """External ids of many keys (same order); a hashed key without a label is an IdError."""
        return [self.label(kind, int(k)) for k in np.asarray(keys, dtype=np.int64)]

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self.pairs.values())

"""The labels of hashed external ids, per kind, gathered while loading data.

Why: inside the code every id is an int64 key (:mod:`recsys.ids`); a string id's key is a hash,
so its text must travel beside the data to be printed again (feed entries, reports). Loaders add
the (key, label) pairs they see; a run directory keeps those of the ids it serves
(``labels.parquet``). Only hashed keys (< 0) are held: an integer id is its own label.

Every merge checks that no two distinct labels of one kind share a key
(:func:`recsys.ids.check_collisions`), so a collision is refused when the data is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from recsys.ids import check_collisions, key_label

_NO_KEYS = np.zeros(0, dtype=np.int64)
_NO_LABELS = np.zeros(0, dtype=np.str_)


@dataclass
class IdLabels:
    """``{kind: (keys, labels)}`` with keys sorted, unique and all < 0."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, kind: str, keys: np.ndarray, labels: np.ndarray | Iterable[str]) -> None:
        """Add (key, label) pairs of ``kind``; non-hashed keys are ignored, repeats kept once.
        Raises :class:`recsys.ids.IdError` if two distinct labels share a key."""
        keys = np.asarray(keys, dtype=np.int64)
        texts = np.asarray(labels if isinstance(labels, np.ndarray) else list(labels), dtype=np.str_)
        if len(keys) != len(texts):
            raise ValueError(f"{kind}: {len(keys)} keys but {len(texts)} labels")
        hashed = keys < 0
        keys, texts = keys[hashed], texts[hashed]
        old_keys, old_texts = self.pairs.get(kind, (_NO_KEYS, _NO_LABELS))
        if len(keys) == 0:
            return
        all_keys = np.concatenate([old_keys, keys])
        all_texts = np.concatenate([old_texts.astype(np.str_), texts])
        check_collisions(all_keys, all_texts, f"{kind} id")
        unique_keys, first = np.unique(all_keys, return_index=True)
        self.pairs[kind] = (unique_keys, all_texts[first])

    def update(self, other: IdLabels) -> None:
        """Merge every kind of ``other`` into this one (collisions raise, as in :meth:`add`)."""
        for kind, (keys, texts) in other.pairs.items():
            self.add(kind, keys, texts)

    def get(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) of one kind; empty arrays when none is known."""
        return self.pairs.get(kind, (_NO_KEYS, _NO_LABELS))

    def restricted(self, kind: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) of ``kind`` for the hashed keys among ``keys`` that have a label."""
        known, texts = self.get(kind)
        wanted = np.isin(known, np.asarray(keys, dtype=np.int64))
        return known[wanted], texts[wanted]

    def label(self, kind: str, key: int) -> str:
        """The external id of ``key`` (its decimal string for integer ids)."""
        known, texts = self.get(kind)
        pos = int(np.searchsorted(known, key))
        if pos < len(known) and known[pos] == key:
            return str(texts[pos])
        return key_label(int(key))

    def labels_of(self, kind: str, keys: np.ndarray) -> np.ndarray:
        """External ids of many keys (unicode array, same order)."""
        known, texts = self.get(kind)
        keys = np.asarray(keys, dtype=np.int64)
        out = keys.astype(str).astype(object)
        if len(known):
            pos = np.clip(np.searchsorted(known, keys), 0, len(known) - 1)
            hit = known[pos] == keys
            out[hit] = texts[pos[hit]]
        missing = (keys < 0) & ~np.isin(keys, known)
        if missing.any():
            key_label(int(keys[np.argmax(missing)]))  # raises IdError naming the key
        return np.asarray(out.tolist(), dtype=np.str_)

    def as_mapping(self, kinds: Iterable[str]) -> Mapping[str, tuple[np.ndarray, np.ndarray]]:
        """The pairs of the given kinds, in the shape :func:`recsys.artifacts.save_labels` takes."""
        return {kind: self.get(kind) for kind in kinds}

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self.pairs.values())

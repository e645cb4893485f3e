"""External ids (a shop's opaque strings) and the int64 keys every internal structure uses.

Why keys: arrays, CSRs, the event log and the feature store all work on int64, and a shop's ids are
strings (customer ids, SKUs, UUIDs). Rather than carry Python strings through the hot paths, each
external id is turned into one int64 *key* at the boundary (files, HTTP, CLI), and back into its
label only where a person or a client reads it (feed entries, reports), from the labels a run
directory stores.

The rule (stable across processes, machines and releases, so keys can be stored):
- a canonical non-negative decimal integer below 2**63 (``"0"``, ``"42"``; no sign, no leading zero)
  is its own key: integer ids keep their values, and a JSON number and its decimal string are the
  same id;
- any other string is hashed: the first 8 bytes of BLAKE2b over its UTF-8, shifted to 62 bits and
  mapped to ``-2 - h``, so it is always <= -2 (never a decimal key, never ``NO_ID`` = -1).

Two different strings share a key with probability about n**2 / 2**63 for n distinct ids (about
1e-3 at 100M); loaders that see labels check for it (:func:`check_collisions`) and refuse the data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_ID_LENGTH = 128
"""Longest external id accepted (characters); keeps store keys and log records bounded."""

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
ID_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]+$"
"""The id rule as a JSON-Schema/ECMA pattern (OpenAPI): no control characters, no line or paragraph
separators (lone surrogates cannot travel in valid JSON text and are refused too)."""
ID_LIST_PATTERN = "^(?:[^,\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]{0,128}(?:,|$))*$"
"""A comma-separated list of ids (empty elements are skipped)."""
_INT64_MAX = 2**63 - 1


class IdError(ValueError):
    """An external id that is empty, too long or not printable; the message names the field."""


def check_id(value: object, field: str = "id") -> str:
    """The external id as its canonical string, or :class:`IdError` naming ``field``.

    Accepts ``str`` and ``int`` (not ``bool``); an int is its decimal string. Printable means: no
    control characters (C0, DEL, C1), no line/paragraph separators, no lone surrogates; any other
    Unicode text is a valid opaque id."""
    if isinstance(value, bool) or not isinstance(value, int | str | np.integer | np.str_):
        raise IdError(f"{field}: expected a string or integer id, got {type(value).__name__}")
    text = str(int(value)) if isinstance(value, int | np.integer) else str(value)
    if not text:
        raise IdError(f"{field}: empty id")
    if len(text) > MAX_ID_LENGTH:
        raise IdError(f"{field}: id longer than {MAX_ID_LENGTH} characters ({len(text)})")
    if _UNPRINTABLE.search(text):
        raise IdError(f"{field}: id {text[:40]!r} has non-printable characters")
    return text


def _hash_key(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return -2 - (int.from_bytes(digest, "big") >> 2)


def _hash_keys(texts: list[str]) -> np.ndarray:
    """:func:`_hash_key` of many strings: the digests are joined and read as big-endian uint64."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts])
    high = np.frombuffer(digests, dtype=">u8") >> np.uint64(2)
    return -2 - high.astype(np.int64)


def id_key(value: object, field: str = "id") -> int:
    """The int64 key of one external id (validated; see the module docstring for the rule)."""
    text = check_id(value, field)
    if _CANONICAL_INT.fullmatch(text) and int(text) <= _INT64_MAX:
        return int(text)
    return _hash_key(text)


_ASCII_PRINTABLE = r"^[\x20-\x7e]+$"
_CANONICAL_PATTERN = r"^(0|[1-9][0-9]{0,18})$"


def _mask(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def text_keys(values: pa.Array, field: str = "id") -> tuple[np.ndarray, np.ndarray]:
    """Keys of a string array, one per entry, and the mask of entries that are not ids (their key
    is 0). The same keys as :func:`id_key`, computed in bulk: ASCII values are checked and split
    into canonical decimals and hashed strings by pyarrow; only the hashing, and any non-ASCII
    value, is per-value Python work."""
    n = len(values)
    keys = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if n == 0:
        return keys, bad
    ascii_ = _mask(pc.string_is_ascii(values))
    length = np.asarray(pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False))
    ok = ascii_ & _mask(pc.match_substring_regex(values, _ASCII_PRINTABLE)) & (length <= MAX_ID_LENGTH)
    bad[ascii_ & ~ok] = True
    canonical = ok & _mask(pc.match_substring_regex(values, _CANONICAL_PATTERN))
    at = np.flatnonzero(canonical)
    if len(at):
        numbers = np.asarray(pc.cast(values.take(pa.array(at)), pa.uint64()).to_numpy(zero_copy_only=False))
        fits = numbers <= _INT64_MAX
        keys[at[fits]] = numbers[fits].astype(np.int64)
        canonical[at[~fits]] = False  # 19 digits beyond int64: hashed like any other string
    at = np.flatnonzero(ok & ~canonical)
    if len(at):
        keys[at] = _hash_keys(values.take(pa.array(at)).to_pylist())
    for i in np.flatnonzero(~ascii_).tolist():  # non-ASCII (or null): the one-value rule decides
        try:
            keys[i] = id_key(values[i].as_py(), field)
        except IdError:
            bad[i] = True
    return keys, bad


def id_keys(values: pa.Array | pa.ChunkedArray | Iterable[object], field: str = "id") -> np.ndarray:
    """Keys of many ids at once (int64 array, same order). Integer arrays are their own keys;
    string arrays are hashed once per distinct value. Nulls are :class:`IdError`."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise IdError(f"{field}: missing id")
    if pa.types.is_integer(arr.type):
        out = arr.to_numpy(zero_copy_only=False).astype(np.int64)
        if len(out) and out.min() < 0:
            # negative integers are not canonical: they are hashed as their decimal strings
            neg = out < 0
            out[neg] = [id_key(str(v), field) for v in out[neg]]
        return out
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    encoded = pc.dictionary_encode(arr)
    table, bad = text_keys(encoded.dictionary, field)
    if bad.any():
        id_key(encoded.dictionary[int(np.argmax(bad))].as_py(), field)  # raises, naming the problem
    return table[encoded.indices.to_numpy(zero_copy_only=False)]


def id_labels(values: pa.Array | pa.ChunkedArray | Iterable[object]) -> np.ndarray:
    """External ids as a numpy unicode array (what a run directory stores; loads without pickle)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return np.asarray(arr.to_pylist(), dtype=np.str_)


def check_collisions(keys: np.ndarray, labels: np.ndarray, field: str = "id") -> None:
    """:class:`IdError` if two distinct labels share a key (see the module docstring)."""
    if len(keys) == 0:
        return
    order = np.argsort(keys, kind="stable")
    k, lab = keys[order], labels[order]
    same_key = k[1:] == k[:-1]
    clash = same_key & (lab[1:] != lab[:-1])
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise IdError(f"{field}: ids {lab[i]!r} and {lab[i + 1]!r} hash to the same key; rename one")


def key_label(key: int, labels: dict[int, str] | None = None) -> str:
    """The label of a key: from ``labels`` when known, else the decimal string (integer ids)."""
    if labels is not None and key in labels:
        return labels[key]
    if key < 0:
        raise IdError(f"no label known for hashed key {key}")
    return str(key)

"""LightGCN-format splits (``train.txt``/``test.txt``; each line ``user item item ...``, 0-based ids).

Why a byte-level parser: the standard benchmarks (Gowalla, Yelp2018, Amazon-Book) have millions of
ids; decoding digits with numpy over the whole file loads Gowalla in well under a second, and the
same pass finds malformed input and names its line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.datasets.split import binary_csr
from recsys.interactions import Interactions
from recsys.io.errors import DatasetError

TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"
_MAX_DIGITS = 18  # always fits int64


def _line_of(buf: np.ndarray, position: int) -> int:
    return int(np.count_nonzero(buf[:position] == ord("\n"))) + 1


def parse_lightgcn_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items) of every pair, and every user id that starts a line (users may list no items)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    buf = np.frombuffer(data, dtype=np.uint8)
    is_digit = (buf >= ord("0")) & (buf <= ord("9"))
    is_space = (buf == ord(" ")) | (buf == ord("\t")) | (buf == ord("\r")) | (buf == ord("\n"))
    bad = ~(is_digit | is_space)
    if bad.any():
        pos = int(np.argmax(bad))
        char = bytes(buf[pos : pos + 1]).decode("latin-1")
        raise DatasetError(
            f"{path}, line {_line_of(buf, pos)}: unexpected character {char!r}; "
            "expected non-negative integer ids separated by spaces"
        )
    before = np.concatenate([[False], is_digit[:-1]])
    after = np.concatenate([is_digit[1:], [False]])
    starts = np.flatnonzero(is_digit & ~before)
    ends = np.flatnonzero(is_digit & ~after)
    lengths = ends - starts + 1
    if len(lengths) and lengths.max() > _MAX_DIGITS:
        pos = int(starts[np.argmax(lengths > _MAX_DIGITS)])
        raise DatasetError(f"{path}, line {_line_of(buf, pos)}: id with more than {_MAX_DIGITS} digits")
    values = np.zeros(len(starts), dtype=np.int64)
    for j in range(int(lengths.max()) if len(lengths) else 0):
        live = np.flatnonzero(lengths > j)
        values[live] = values[live] * 10 + (buf[starts[live] + j].astype(np.int64) - ord("0"))
    line = np.searchsorted(np.flatnonzero(buf == ord("\n")), starts)  # 0-based line of each token
    first = np.concatenate([[True], line[1:] != line[:-1]]) if len(line) else np.zeros(0, dtype=bool)
    heads = values[first]
    owner = heads[np.cumsum(first) - 1]
    return owner[~first], values[~first], heads


def load_lightgcn(path: str | Path) -> Interactions:
    """Load ``DIR/train.txt`` and ``DIR/test.txt``; ids are kept (dense index == file id)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected one with {TRAIN_FILE} and {TEST_FILE})")
    for name in (TRAIN_FILE, TEST_FILE):
        if not (root / name).is_file():
            raise DatasetError(
                f"{root / name}: missing (a LightGCN split needs {TRAIN_FILE} and {TEST_FILE})"
            )
    parts = {name: parse_lightgcn_file(root / name) for name in (TRAIN_FILE, TEST_FILE)}
    (tr_u, tr_i, tr_heads), (te_u, te_i, te_heads) = parts[TRAIN_FILE], parts[TEST_FILE]
    n_users = 1 + max((int(a.max()) for a in (tr_heads, te_heads) if len(a)), default=-1)
    n_items = 1 + max((int(a.max()) for a in (tr_i, te_i) if len(a)), default=-1)
    shape = (n_users, n_items)
    return Interactions(
        train=binary_csr(tr_u, tr_i, shape),
        test=binary_csr(te_u, te_i, shape),
        user_ids=np.arange(n_users, dtype=np.int64),
        item_ids=np.arange(n_items, dtype=np.int64),
    )

"""Classic MovieLens ``u.data`` files: tab-separated ``user item rating timestamp``, no header.

Same dense-id mapping and chronological per-user split as the RecBole loader (shared code).
"""

from __future__ import annotations

from pathlib import Path

from recsys.datasets.recbole import id_column, numeric_column, read_tsv
from recsys.datasets.split import chronological_split
from recsys.interactions import Interactions
from recsys.io.errors import DatasetError

DATA_FILE = "u.data"
COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def load_movielens(
    path: str | Path, *, test_ratio: float = 0.2, min_rating: float | None = None
) -> Interactions:
    """Load ``u.data`` (or a directory containing it) and split each user's history by time."""
    file = Path(path)
    if file.is_dir():
        file = file / DATA_FILE
    if not file.is_file():
        raise DatasetError(f"{file}: no such file (expected MovieLens {DATA_FILE})")
    table = read_tsv(file, COLUMNS)
    return chronological_split(
        id_column(file, table, "user_id", 0),
        id_column(file, table, "item_id", 0),
        numeric_column(file, table, "timestamp", 0),
        test_ratio=test_ratio,
        ratings=numeric_column(file, table, "rating", 0),
        min_rating=min_rating,
    )

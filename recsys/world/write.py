"""Arrow tables for every world file, typed exactly as ``recsys.schema`` says.

Strings are built column-wise with pyarrow compute (dictionary → string casts and element-wise
joins), never per row in Python, so a million events convert in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.schema import (
    CATEGORIES,
    FOLLOWS,
    FRIENDS,
    ITEMS,
    KOLS,
    POSTS,
    USERS,
    TableSchema,
)
from recsys.world import priors
from recsys.world.entities import StaticWorld

PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "write_statistics": True}


def _labels(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pa.Array:
    dict_arr = pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(list(names), pa.string())
    )
    return dict_arr.cast(pa.string())


def _table(schema: TableSchema, arrays: list[pa.Array]) -> pa.Table:
    return pa.Table.from_arrays(arrays, schema=schema.arrow_schema())


def static_tables(w: StaticWorld) -> dict[str, pa.Table]:
    t = w.truth
    n_u, n_i, n_k, n_p = t.n_users, t.n_items, t.n_kols, w.post_kol.shape[0]
    brand = pc.binary_join_element_wise(
        _labels(t.item_category, CATEGORIES), pa.array(w.item_brand).cast(pa.string()), "_brand_"
    )
    return {
        "users": _table(
            USERS,
            [
                pa.array(np.arange(n_u, dtype=np.int64)),
                pa.array(w.user_created_at),
                _labels(t.user_segment, priors.SEGMENT_NAMES),
            ],
        ),
        "items": _table(
            ITEMS,
            [
                pa.array(np.arange(n_i, dtype=np.int64)),
                _labels(t.item_category, CATEGORIES),
                brand,
                pa.array(t.item_price.astype(np.float64)),
                pa.array(w.item_merchant),
                pa.array(t.item_in_stock.astype(bool)),
            ],
        ),
        "kols": _table(
            KOLS, [pa.array(np.arange(n_k, dtype=np.int64)), pa.array(w.kol_verticals, pa.string())]
        ),
        "posts": _table(
            POSTS,
            [
                pa.array(np.arange(n_p, dtype=np.int64)),
                pa.array(w.post_kol),
                pa.array(w.post_item),
                pa.array(w.post_created_at),
            ],
        ),
        "follows": _table(FOLLOWS, [pa.array(w.follow_user), pa.array(w.follow_kol), pa.array(w.follow_ts)]),
        "friends": _table(FRIENDS, [pa.array(w.friend_user), pa.array(w.friend_friend)]),
    }


def write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **PARQUET_OPTIONS)


def open_writer(path: Path, schema: TableSchema) -> pq.ParquetWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return pq.ParquetWriter(path, schema.arrow_schema(), **PARQUET_OPTIONS)

"""The tiny run of :mod:`tests.ranking_fixtures` with a shop's string ids, for serving tests.

Same world, same facts, but every external id is a string the way a shop writes it: users are UUIDs,
items are SKUs (``SKU-1001``), creators are handles (``glow_10``; ``studio/glow_11`` has a slash, as
an opaque id may) and posts ``post-500``. The run
directory holds their int64 keys (``recsys.ids.id_key``) in its arrays and tables and the labels in
``labels.parquet``, as training writes them. Look ids up with :class:`Shop` (Tiny's int → the string).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.base import StoreEvent
from recsys import artifacts as A
from recsys.ids import id_key
from serving.app import create_app
from serving.settings import Settings
from tests.ranking_fixtures import Tiny, make_tiny_run
from tests.service_harness import running

_USER_NAMESPACE = uuid.UUID("6f1c1f00-0000-4000-8000-00000000c0de")


class Shop:
    """Tiny's integer ids spelled as a shop's strings (one function per kind)."""

    @staticmethod
    def user(u: int) -> str:
        return str(uuid.uuid5(_USER_NAMESPACE, f"customer-{u}"))

    @staticmethod
    def item(i: int) -> str:
        return f"SKU-{i}"

    @staticmethod
    def kol(k: int) -> str:
        return "studio/glow_11" if k == 11 else f"glow_{k}"  # ids are opaque: one holds a slash

    @staticmethod
    def post(p: int) -> str:
        return f"post-{p}"


_KIND_OF_COLUMN = {
    "user_id": "user",
    "friend_id": "user",
    "to_user_id": "user",
    "item_id": "item",
    "kol_id": "kol",
    "post_id": "post",
}
_SPELL = {"user": Shop.user, "item": Shop.item, "kol": Shop.kol, "post": Shop.post}


def _rekey(values: np.ndarray, kind: str, seen: dict[str, dict[int, str]]) -> np.ndarray:
    """Tiny's int ids → the keys of their string spellings (remembering each label)."""
    out = np.empty(len(values), dtype=np.int64)
    for j, v in enumerate(np.asarray(values).tolist()):
        label = _SPELL[kind](int(v))
        out[j] = id_key(label)
        seen[kind][int(out[j])] = label
    return out


def make_string_id_run(run_dir: Path, skip_tables: tuple[str, ...] = ()) -> Path:
    """Write the tiny run with string ids (see the module docstring); manifest last, checksums valid."""
    run_dir = make_tiny_run(run_dir, skip_tables=skip_tables)
    seen: dict[str, dict[int, str]] = {kind: {} for kind in _SPELL}
    for name, kind in ((A.USER_IDS, "user"), (A.ITEM_IDS, "item")):
        A.save_array(run_dir / name, _rekey(A.load_array(run_dir / name), kind, seen))
    for path in sorted(
        [*run_dir.glob(f"{A.CATALOG_DIR}/*.parquet"), *run_dir.glob(f"{A.SOCIAL_DIR}/*.parquet")]
    ):
        table = pq.read_table(path)
        for column, kind in _KIND_OF_COLUMN.items():
            if column in table.column_names:
                keys = _rekey(table[column].to_numpy(), kind, seen)
                table = table.set_column(table.schema.get_field_index(column), column, pa.array(keys))
        pq.write_table(table, path)
    A.save_labels(
        run_dir / A.LABELS,
        {
            kind: (np.array(list(labels), dtype=np.int64), np.array(list(labels.values()), dtype=np.str_))
            for kind, labels in seen.items()
        },
    )
    A.write_manifest(run_dir, A.read_manifest(run_dir))
    return run_dir


_CREATOR_SALES = [
    (100, "shopper-a", 1000, "impression", 10, "r1", None),
    (101, "shopper-a", 1000, "buy", 10, "r1", 30.0),
    (102, "shopper-b", 1001, "buy", 11, "r2", 5.0),
]
"""(ts, user, item, action, creator, request_id, value): ``glow_10``'s post sells SKU-1000 for 30.0
after an impression; ``glow_11``'s sells SKU-1001 for 5.0."""


def creator_sales_events() -> pa.Table:
    """:data:`_CREATOR_SALES` as an events file spells them: the shop's string ids."""
    rows = _CREATOR_SALES
    n = len(rows)
    return pa.table(
        {
            "ts": pa.array([r[0] for r in rows], pa.int64()),
            "user_id": [r[1] for r in rows],
            "item_id": [Shop.item(r[2]) for r in rows],
            "action": [r[3] for r in rows],
            "post_id": pa.nulls(n, pa.string()),
            "kol_id": [Shop.kol(r[4]) for r in rows],
            "to_user_id": pa.nulls(n, pa.string()),
            "request_id": [r[5] for r in rows],
            "value": pa.array([r[6] for r in rows], pa.float64()),
        }
    )


def creator_sales_store_events() -> list[StoreEvent]:
    """:data:`_CREATOR_SALES` as the service logs them: int64 keys, no labels."""
    return [
        StoreEvent(
            ts=float(ts),
            user_id=id_key(user),
            item_id=id_key(Shop.item(item)),
            action=action,
            kol_id=id_key(Shop.kol(kol)),
            request_id=request_id,
            value=value or 0.0,
        )
        for ts, user, item, action, kol, request_id, value in _CREATOR_SALES
    ]


__all__ = ["Shop", "Tiny", "creator_sales_events", "creator_sales_store_events", "make_string_id_run"]


def settings_for(runs_root: Path, ranking_dir: Path, **changes: Any) -> Settings:
    data: dict[str, Any] = {
        "runs_root": runs_root,
        "ranking_dir": ranking_dir,
        "store_url": "memory://",
        "request_deadline_s": 5.0,  # generous: tests must not depend on machine speed
        "experiments_dir": None,
    }
    data.update(changes)
    return Settings(**data)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings)) as client:
        yield client

"""A world's events rewritten as a shop would export them: the stand-in for a real shop's log.

Why: ``kolfeed data import`` must work on data it has never seen the shape of. A real
multi-behaviour e-commerce log has string customer ids and SKUs, its own event names (``view``,
``favorite``, ``add_to_cart``, ``purchase``), millisecond timestamps, no feed impressions, shares or
creators, events the recommender does not use (``page_view``), exact duplicate rows, rows out of time
order and a few broken rows. This writes such a file from a synthetic world (whose hidden truth still
decides who buys what), plus a partial catalogue (no ``merchant_id``/``in_stock`` columns, a few
empty categories), so tests and benchmarks can run the whole import → train → serve path on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

SHOP_EVENT_NAMES: dict[str, str] = {
    "click": "view",
    "save": "favorite",
    "cart": "add_to_cart",
    "buy": "purchase",
}
"""Our action → the shop's event name; other actions (impressions, likes, shares, hides) are not in
a shop's log."""
NOISE_EVENT = "page_view"
IMPORT_MAP = "user_id=customer_id,item_id=sku,action=event_type,ts=timestamp"
IMPORT_ACTIONS = "view=click,favorite=save,add_to_cart=cart,purchase=buy,page_view=skip"
"""The ``--map`` and ``--actions`` a shop would pass to import this export."""


@dataclass(frozen=True)
class ShopExportConfig:
    duplicate_fraction: float = 0.02
    """Share of rows written twice (a retried upload)."""
    noise_fraction: float = 0.05
    """Extra ``page_view`` rows (an event name to map to skip)."""
    broken_fraction: float = 0.002
    """Rows with an empty customer id."""
    shuffle_block: int = 500
    """Rows are shuffled within blocks of this many (out of time order, but roughly sorted)."""
    seed: int = 0
    string_ids: bool = True
    """False: customer ids and SKUs as plain integers (shops whose ids are numbers)."""


def customer_ids(users: np.ndarray, strings: bool = True) -> pa.Array:
    if not strings:
        return pa.array(users * 7919 % 1_000_003).cast(pa.string())
    return pc.binary_join_element_wise("cust-", pa.array(users * 7919 % 1_000_003).cast(pa.string()), "")


def skus(items: np.ndarray, strings: bool = True) -> pa.Array:
    if not strings:
        return pa.array(items).cast(pa.string())
    return pc.binary_join_element_wise("SKU-", pc.utf8_lpad(pa.array(items).cast(pa.string()), 6, "0"), "")


def write_shop_export(world_dir: Path, out_dir: Path, cfg: ShopExportConfig | None = None) -> dict[str, int]:
    """Write ``out_dir/events.csv.gz`` and ``out_dir/items.csv`` from ``world_dir``; returns row counts."""
    cfg = cfg or ShopExportConfig()
    rng = np.random.default_rng(cfg.seed)
    events = pq.read_table(Path(world_dir) / "events.parquet", columns=["ts", "user_id", "item_id", "action"])
    action = events.column("action").to_numpy(zero_copy_only=False)
    keep = np.isin(action, list(SHOP_EVENT_NAMES))
    user = events.column("user_id").to_numpy()[keep].astype(np.int64)
    item = events.column("item_id").to_numpy()[keep].astype(np.int64)
    ts_ms = events.column("ts").to_numpy()[keep].astype(np.int64) * 1000 + rng.integers(0, 1000, keep.sum())
    name = np.array([SHOP_EVENT_NAMES[str(a)] for a in action[keep]], dtype=object)

    n = len(user)
    n_noise = int(n * cfg.noise_fraction)
    noise_rows = rng.integers(0, n, n_noise)
    dup_rows = rng.choice(n, int(n * cfg.duplicate_fraction), replace=False)
    order = np.concatenate([np.arange(n), dup_rows, noise_rows])
    is_noise = np.concatenate([np.zeros(n + len(dup_rows), bool), np.ones(n_noise, bool)])
    order_ts = ts_ms[order] + np.where(is_noise, 1, 0)
    by_time = np.argsort(order_ts, kind="stable")
    order, is_noise = order[by_time], is_noise[by_time]
    block = max(1, cfg.shuffle_block)
    for start in range(0, len(order), block):
        perm = rng.permutation(min(block, len(order) - start)) + start
        order[start : start + len(perm)], is_noise[start : start + len(perm)] = order[perm], is_noise[perm]

    cust = customer_ids(user[order], cfg.string_ids)
    broken = rng.random(len(order)) < cfg.broken_fraction
    cust = pc.if_else(pa.array(broken), pa.scalar("", pa.string()), cust)
    table = pa.table(
        {
            "customer_id": cust,
            "sku": skus(item[order], cfg.string_ids),
            "event_type": pa.array(np.where(is_noise, NOISE_EVENT, name[order]).astype(str)),
            "timestamp": pa.array(ts_ms[order] + is_noise),
            "session": pa.array(rng.integers(0, 1 << 30, len(order))),
        }
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with pa.CompressedOutputStream(str(out_dir / "events.csv.gz"), "gzip") as stream:
        pcsv.write_csv(table, stream)

    catalogue = pq.read_table(
        Path(world_dir) / "items.parquet", columns=["item_id", "category", "brand", "price"]
    )
    ids = catalogue.column("item_id").to_numpy()
    category = catalogue.column("category")
    empty = pa.array(rng.random(len(ids)) < 0.01)
    items = pa.table(
        {
            "sku": skus(ids, cfg.string_ids),
            "category": pc.if_else(empty, pa.scalar(None, pa.string()), category),
            "brand": catalogue.column("brand"),
            "price": catalogue.column("price"),
        }
    )
    pcsv.write_csv(items, out_dir / "items.csv")
    return {"events": table.num_rows, "items": items.num_rows, "duplicates": len(dup_rows), "noise": n_noise}

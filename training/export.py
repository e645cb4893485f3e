"""Write the payload of a run directory (everything but the manifest) in the layout that
recsys/artifacts.py documents. Nothing is pickled: .npy, .json and .parquet only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys import artifacts as art
from training.data import Prepared


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _edges(
    m: sp.csr_matrix, row_ids: np.ndarray, col_ids: np.ndarray, names: tuple[str, str, str]
) -> pa.Table:
    coo = m.tocoo()
    return pa.table(
        {
            names[0]: pa.array(row_ids[coo.row], pa.int64()),
            names[1]: pa.array(col_ids[coo.col], pa.int64()),
            names[2]: pa.array(coo.data.astype(np.float64), pa.float64()),
        }
    )


def write_embeddings(run_dir: Path, prepared: Prepared, user_emb: np.ndarray, item_emb: np.ndarray) -> None:
    inter = prepared.interactions
    art.save_array(run_dir / art.USER_EMB, user_emb.astype(np.float32))
    art.save_array(run_dir / art.ITEM_EMB, item_emb.astype(np.float32))
    art.save_array(run_dir / art.USER_IDS, inter.user_ids.astype(np.int64))
    art.save_array(run_dir / art.ITEM_IDS, inter.item_ids.astype(np.int64))
    popularity = np.asarray(prepared.seen.sum(axis=0)).ravel().astype(np.float32)
    art.save_array(run_dir / art.ITEM_POPULARITY, popularity)


def write_labels(run_dir: Path, prepared: Prepared) -> None:
    """``labels.parquet``: the text of every hashed (string) id the run maps (users, items, kols,
    posts), so serving and reports print a shop's own ids. Written for every run (empty when all
    ids are integers), so a run directory always says which ids it knows."""
    inter = prepared.interactions
    labels = prepared.labels
    pairs = {
        "user": labels.restricted("user", inter.user_ids),
        "item": labels.restricted("item", inter.item_ids),
    }
    wg = prepared.world
    if wg is not None:
        pairs["kol"] = labels.restricted("kol", wg.kol_ids)
        post_ids = np.asarray(wg.tables["posts"].column("post_id").to_numpy(zero_copy_only=False), np.int64)
        pairs["post"] = labels.restricted("post", post_ids)
    art.save_labels(run_dir / art.LABELS, pairs)


def write_world(
    run_dir: Path, prepared: Prepared, kol_emb: np.ndarray, affinity: sp.csr_matrix, catalog: bool
) -> None:
    """KOL embeddings and ids always; catalog/ and social/ tables when ``catalog`` is set."""
    wg = prepared.world
    assert wg is not None
    inter = prepared.interactions
    art.save_array(run_dir / art.KOL_EMB, kol_emb.astype(np.float32))
    art.save_array(run_dir / art.KOL_IDS, wg.kol_ids.astype(np.int64))
    if not catalog:
        return
    cat_dir = run_dir / art.CATALOG_DIR
    cat_dir.mkdir()
    for name in ("items", "kols", "posts"):
        pq.write_table(wg.tables[name], cat_dir / f"{name}.parquet")
    social = run_dir / art.SOCIAL_DIR
    social.mkdir()
    pq.write_table(wg.tables["follows"], social / "follows.parquet")
    pq.write_table(wg.tables["friends"], social / "friends.parquet")
    uid = inter.user_ids
    pq.write_table(
        _edges(wg.share, uid, uid, ("user_id", "to_user_id", "weight")), social / "share_edges.parquet"
    )
    pq.write_table(
        _edges(affinity, uid, wg.kol_ids, ("user_id", "kol_id", "affinity")),
        social / "user_kol_affinity.parquet",
    )
    n_k, n_c = wg.kol_fit.shape
    fit = pa.table(
        {
            "kol_id": pa.array(np.repeat(wg.kol_ids, n_c), pa.int64()),
            "category": pa.array(np.tile(np.array(wg.categories, dtype=object), n_k), pa.string()),
            "fit": pa.array(wg.kol_fit.ravel().astype(np.float64), pa.float64()),
        }
    )
    pq.write_table(fit, social / "kol_category_fit.parquet")
    buys = wg.behaviours.get("buy")
    if buys is not None:  # the ranker's "N friends bought this" signal reads who bought what
        bought = _edges(buys, uid, inter.item_ids, ("user_id", "item_id", "weight"))
        pq.write_table(bought.select(["user_id", "item_id"]), social / "buys.parquet")

"""Each user's nearest items in the run's index, searched once when the run is built, not per feed.

Why: a user's embedding and the index are fixed for a run, so the feed's main ANN search (the
largest single cost of a ranking: ~0.3 CPU-ms of ~2 per feed on the 1M-item bench index) gives the
same neighbours on every request. The run keeps the first ``k`` of them per user row
(``user_neighbours.npy``, int32, -1 where there are fewer) and the ranker reads a row prefix instead
of searching whenever its request needs no more than ``k``; otherwise it searches as before. A
search for fewer neighbours returns the prefix of a search for more, so pages are the same (up to
the order of exactly tied scores).

The table is only valid for the index file and search parameters it was searched with; both are
recorded in ``user_neighbours.json`` and checked at load, so a rebuilt or retuned index makes the
ranker search again (and say so) rather than serve stale neighbours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys import artifacts as A

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

TABLE = "user_neighbours.npy"
INFO = "user_neighbours.json"
DEFAULT_K = 512
"""The default variant asks for ann_k 200 plus one per filtered (seen, bought, hidden) item: 512 covers
users with up to 312 of them (an impression marks an item seen: about 15 pages of 20)."""
DEFAULT_MAX_MB = 1024.0
"""A larger table (over about 500k users at k 512) is not written: the ranker searches instead."""
BATCH = 4096


def table_mb(n_users: int, k: int) -> float:
    return n_users * k * 4 / 2**20


def compute(index: faiss.Index, user_emb: np.ndarray, k: int, batch: int = BATCH) -> np.ndarray:
    """(n_users, min(k, n_items)) int32 item rows, best first; a user whose embedding is all zeros (no
    training data: the ranker treats them as cold and never searches) gets a row of -1."""
    from recsys.index import search_ids

    k = min(int(k), int(index.ntotal))
    out = np.full((user_emb.shape[0], max(k, 0)), -1, dtype=np.int32)
    if k <= 0:
        return out
    rows = np.flatnonzero(user_emb.any(axis=1))
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        out[part] = search_ids(index, user_emb[part], k)
    return out


def write(
    run_dir: Path, index: faiss.Index, user_emb: np.ndarray, k: int, max_mb: float = DEFAULT_MAX_MB
) -> dict[str, object]:
    """Search every user's neighbours and write the table and its info into ``run_dir`` (whose
    ``index.faiss`` must be the saved ``index``); the caller re-checksums the manifest. Returns the
    info written, or ``{"skipped": why}`` (and removes an older table) when ``k`` is 0 or the table
    would exceed ``max_mb``."""
    remove(run_dir)
    if k <= 0:
        return {"skipped": "user_neighbours is 0"}
    size = table_mb(user_emb.shape[0], min(k, int(index.ntotal)))
    if size > max_mb:
        why = f"{user_emb.shape[0]:,} users x {k} neighbours = {size:,.0f} MB > {max_mb:,.0f} MB"
        log.info("no precomputed user neighbours (%s): the ranker searches per feed", why)
        return {"skipped": why}
    table = compute(index, user_emb, k)
    A.save_array(run_dir / TABLE, table)
    info: dict[str, object] = {
        "k": int(table.shape[1]),
        "users": int(table.shape[0]),
        "index_sha256": A.sha256_file(run_dir / A.INDEX),
        "search": _search_params(index),
    }
    (run_dir / INFO).write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def remove(run_dir: Path) -> None:
    for name in (TABLE, INFO):
        (run_dir / name).unlink(missing_ok=True)


def read(run_dir: Path, manifest: A.Manifest, index: faiss.Index | None, n_users: int) -> np.ndarray | None:
    """The run's table (memory-mapped: the workers of one machine share its pages), or None when the
    run has none or it does not belong to this index, these search parameters or these users."""
    path, info_path = run_dir / TABLE, run_dir / INFO
    if index is None or not path.is_file() or not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise A.ArtifactError(f"{info_path}: not valid JSON ({exc})") from exc
    table = A.load_array(path, mmap=True)
    why = None
    if not isinstance(info, dict) or info.get("index_sha256") != manifest.files.get(A.INDEX):
        why = f"it was searched in another {A.INDEX}"
    elif info.get("search") != _search_params(index):
        why = f"it was searched with {info.get('search')}, the index now uses {_search_params(index)}"
    elif table.ndim != 2 or table.dtype != np.int32 or table.shape[0] != n_users:
        why = f"it holds {table.shape} {table.dtype}, expected ({n_users}, k) int32"
    if why is not None:
        log.warning("%s: not using %s (%s); rebuild it with `kolfeed index build`", run_dir, TABLE, why)
        return None
    return table


def _search_params(index: faiss.Index) -> dict[str, int]:
    """The parameters that change what a search returns: nprobe (IVF) or efSearch (HNSW)."""
    from recsys.index import _find_hnsw, _find_ivf

    ivf, hnsw = _find_ivf(index), _find_hnsw(index)
    out = {}
    if ivf is not None:
        out["nprobe"] = int(ivf.nprobe)
    if hnsw is not None:
        out["ef_search"] = int(hnsw.hnsw.efSearch)
    return out

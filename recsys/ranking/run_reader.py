"""Reading a run directory for the feed ranker: checksums, embeddings, ids, popularity, the ANN index
(with the search parameters it was tuned with) and the optional catalog and social tables.

Why apart from ``FeedModel``: this is file I/O and validation, done once per model (re)load; the
model turns what is read here into lookup structures (``FeedModel.from_arrays``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq

from recsys import artifacts as A
from recsys import user_neighbours
from recsys.index import INDEX_INFO, load_index

WORLD_TABLES = (
    (A.CATALOG_DIR, ("items", "kols", "posts")),
    (A.SOCIAL_DIR, ("follows", "friends", "share_edges", "user_kol_affinity", "kol_category_fit", "buys")),
)
"""The optional Parquet tables the ranker reads, by sub-directory of the run."""


@dataclass
class RunContents:
    """Everything the ranker reads from one run directory, as arrays and column dicts."""

    run_dir: Path
    manifest: A.Manifest
    user_emb: np.ndarray
    item_emb: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_popularity: np.ndarray | None
    index: faiss.Index | None
    """None when the run has no index (the model builds an exact one)."""
    tables: dict[str, dict[str, np.ndarray]]
    """Table name → column name → array, for the tables of ``WORLD_TABLES`` the run has."""
    labels: dict[str, dict[int, str]]
    user_neighbours: np.ndarray | None = None
    """Each user row's first neighbours in ``index`` (:mod:`recsys.user_neighbours`), when the run has
    a table that belongs to this index."""


def _recorded_search_params(run_dir: Path) -> tuple[int | None, int | None]:
    """efSearch / nprobe the index was tuned with (``index.json``; FAISS does not store them), so the
    served recall is the recall that was measured. None = recsys.index's defaults."""
    path = run_dir / INDEX_INFO
    if not path.is_file():
        return None, None
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise A.ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise A.ArtifactError(f"{path}: expected a JSON object")
    out: list[int | None] = []
    for key in ("ef_search", "nprobe"):
        value = info.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise A.ArtifactError(f"{path}: {key} must be a positive integer, got {value!r}")
        out.append(value)
    return out[0], out[1]


def read_run_dir(run_dir: str | Path, build_missing_index: bool = True) -> RunContents:
    """Verify checksums (ArtifactError on a corrupt run), then read arrays and optional tables;
    without an index file, ``build_missing_index`` False is an ArtifactError."""
    run_dir = Path(run_dir)
    manifest = A.verify_run_dir(run_dir)
    user_emb = A.load_array(run_dir / A.USER_EMB).astype(np.float32, copy=False)
    item_emb = A.load_array(run_dir / A.ITEM_EMB).astype(np.float32, copy=False)
    item_ids = A.load_array(run_dir / A.ITEM_IDS)
    if (run_dir / A.USER_IDS).is_file():
        user_ids = A.load_array(run_dir / A.USER_IDS)
    else:
        user_ids = np.arange(user_emb.shape[0], dtype=np.int64)
    pop = None
    if (run_dir / A.ITEM_POPULARITY).is_file():
        pop = A.load_array(run_dir / A.ITEM_POPULARITY)
    index = None
    if (run_dir / A.INDEX).is_file():
        ef_search, nprobe = _recorded_search_params(run_dir)
        index = load_index(run_dir / A.INDEX, ef_search=ef_search, nprobe=nprobe)
        if index.ntotal != item_emb.shape[0] or index.d != item_emb.shape[1]:
            raise A.ArtifactError(
                f"{run_dir}: {A.INDEX} holds {index.ntotal}x{index.d} vectors but {A.ITEM_EMB} is "
                f"{item_emb.shape[0]}x{item_emb.shape[1]}"
            )
    elif not build_missing_index:
        raise A.ArtifactError(f"{run_dir}: no {A.INDEX}")
    try:
        labels = A.load_labels(run_dir / A.LABELS)
    except A.ArtifactError:
        raise
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise A.ArtifactError(f"{run_dir / A.LABELS}: cannot read labels ({exc})") from exc
    tables = {}
    for sub, names in WORLD_TABLES:
        for name in names:
            path = run_dir / sub / f"{name}.parquet"
            if path.is_file():
                try:
                    tables[name] = {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}
                except Exception as exc:  # pyarrow raises several types for a bad file
                    raise A.ArtifactError(f"{path}: cannot read Parquet ({exc})") from exc
    return RunContents(
        run_dir=run_dir,
        manifest=manifest,
        user_emb=user_emb,
        item_emb=item_emb,
        user_ids=user_ids,
        item_ids=item_ids,
        item_popularity=pop,
        index=index,
        tables=tables,
        labels=labels,
        user_neighbours=user_neighbours.read(run_dir, manifest, index, user_emb.shape[0]),
    )

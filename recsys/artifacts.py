"""Run directories: the only hand-off from training to serving.

A run directory is plain files plus ``manifest.json`` listing the sha256 of every other file.
Nothing is pickled: arrays are ``.npy``/``.npz`` loaded with ``allow_pickle=False``, tables are
Parquet, metadata is JSON. Serving calls :func:`verify_run_dir` and refuses a run that fails it.

Files a run directory may hold (names are constants below; optional ones may be absent, e.g. a
LightGCN-format dataset has no creators):

- ``manifest.json``           run id, version, created_at, config, data fingerprint, metrics, files
- ``metrics.json``            evaluation results
- ``curve.json``              training curve (list of {step, ...})
- ``train.log``               the run's log
- ``user_emb.npy``            float32 (n_users, d)   query vectors for retrieval; a user without
                              training interactions has a zero row (served as cold)
- ``item_emb.npy``            float32 (n_items, d)   item vectors; score = user_emb @ item_emb.T
- ``kol_emb.npy``             float32 (n_kols, d)    optional
- ``user_ids.npy``, ``item_ids.npy``, ``kol_ids.npy``  int64 external ids of each row
- ``item_popularity.npy``     float32 (n_items,) training popularity (cold start / trending prior)
- ``labels.parquet``          (kind, key, label) for every user/item/kol/post id of the run that is
                              not its own key (string ids; see recsys/ids.py); integer ids need no
                              row. Written by every training run; absent in older run directories
- ``index.faiss``             FAISS index over item_emb (inner product), built by ``kolfeed index build``
- ``model/``                  the model's own npz files (``Recommender.save``)
- ``catalog/*.parquet``       items, kols, posts tables of the world (for candidates and reasons)
- ``social/*.parquet``        follows, friends, share_edges(user_id, to_user_id, weight),
                              user_kol_affinity(user_id, kol_id, affinity),
                              kol_category_fit(kol_id, category, fit),
                              buys(user_id, item_id) — training purchases, for friends' social proof
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
METRICS = "metrics.json"
CURVE = "curve.json"
LOG = "train.log"
USER_EMB = "user_emb.npy"
ITEM_EMB = "item_emb.npy"
KOL_EMB = "kol_emb.npy"
USER_IDS = "user_ids.npy"
ITEM_IDS = "item_ids.npy"
KOL_IDS = "kol_ids.npy"
ITEM_POPULARITY = "item_popularity.npy"
INDEX = "index.faiss"
LABELS = "labels.parquet"
LABEL_KINDS: tuple[str, ...] = ("user", "item", "kol", "post")
MODEL_DIR = "model"
CATALOG_DIR = "catalog"
SOCIAL_DIR = "social"

SCHEMA_VERSION = 1


class ArtifactError(RuntimeError):
    """A run directory is missing, incomplete or corrupt."""


@dataclass
class Manifest:
    run_id: str
    version: int
    created_at: float
    config: dict[str, Any]
    data_fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    data_rows: dict[str, Any] = field(default_factory=dict)
    """Rows the run read, kept and skipped per reason (``recsys.io.report.RowsReport``); {} when unknown."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "version": self.version,
            "created_at": self.created_at,
            "config": self.config,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "libraries": self.libraries,
            "files": self.files,
            "data_rows": self.data_rows,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Manifest:
        try:
            return cls(
                run_id=str(raw["run_id"]),
                version=int(raw["version"]),
                created_at=float(raw["created_at"]),
                config=dict(raw["config"]),
                data_fingerprint=str(raw["data_fingerprint"]),
                metrics=dict(raw.get("metrics", {})),
                libraries=dict(raw.get("libraries", {})),
                files={str(k): str(v) for k, v in dict(raw["files"]).items()},
                schema_version=int(raw.get("schema_version", SCHEMA_VERSION)),
                data_rows=dict(raw.get("data_rows", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed manifest: {exc!r}") from exc


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _payload_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("kolfeed", "numpy", "scipy", "torch", "implicit", "faiss-cpu", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_manifest(run_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum every file under ``run_dir`` into the manifest and write it atomically (last)."""
    run_dir = Path(run_dir)
    manifest.files = {p.relative_to(run_dir).as_posix(): sha256_file(p) for p in _payload_files(run_dir)}
    if not manifest.libraries:
        manifest.libraries = library_versions()
    tmp = run_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
    os.replace(tmp, run_dir / MANIFEST)
    return manifest


def read_manifest(run_dir: Path) -> Manifest:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: no {MANIFEST}; not a run directory")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_json(raw)


def verify_run_dir(run_dir: Path, required: tuple[str, ...] = (USER_EMB, ITEM_EMB, ITEM_IDS)) -> Manifest:
    """Check every listed file exists with its recorded sha256; raise ArtifactError otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir}: not a directory")
    manifest = read_manifest(run_dir)
    for name in required:
        if name not in manifest.files:
            raise ArtifactError(f"{run_dir}: manifest lists no {name}")
    for rel, digest in manifest.files.items():
        path = run_dir / rel
        if not path.is_file():
            raise ArtifactError(f"{run_dir}: {rel} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ArtifactError(f"{run_dir}: checksum mismatch for {rel} (corrupt or modified)")
    return manifest


def next_version(runs_root: Path) -> int:
    """One more than the highest version of any run under ``runs_root`` (versions only increase)."""
    best = 0
    root = Path(runs_root)
    if root.is_dir():
        for child in root.iterdir():
            if (child / MANIFEST).is_file():
                try:
                    best = max(best, read_manifest(child).version)
                except ArtifactError:
                    continue
    return best + 1


def newest_run(runs_root: Path) -> Path:
    """The run directory with the highest version under ``runs_root``."""
    root = Path(runs_root)
    found: list[tuple[int, Path]] = []
    if root.is_dir():
        for child in root.iterdir():
            if (child / MANIFEST).is_file():
                try:
                    found.append((read_manifest(child).version, child))
                except ArtifactError:
                    continue
    if not found:
        raise ArtifactError(f"no run directories under {root}")
    return max(found)[1]


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def save_array(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot load array ({exc})") from exc


def save_labels(path: Path, labels: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write ``{kind: (keys, labels)}`` as one Parquet table (kind, key, label); only the pairs whose
    label is not the key's decimal string (hashed string ids) are kept, so integer-id runs stay tiny."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds: list[str] = []
    keys: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    for kind, (k, lab) in labels.items():
        if kind not in LABEL_KINDS:
            raise ValueError(f"unknown label kind {kind!r}; expected one of {', '.join(LABEL_KINDS)}")
        k = np.asarray(k, dtype=np.int64)
        keep = k < 0
        kinds.extend([kind] * int(keep.sum()))
        keys.append(k[keep])
        texts.append(np.asarray(lab)[keep].astype(str))
    table = pa.table(
        {
            "kind": pa.array(kinds, pa.string()),
            "key": pa.array(np.concatenate(keys) if keys else np.zeros(0, np.int64), pa.int64()),
            "label": pa.array(np.concatenate(texts).tolist() if texts else [], pa.string()),
        }
    )
    pq.write_table(table, path)


def load_labels(path: Path) -> dict[str, dict[int, str]]:
    """``{kind: {key: label}}`` from :func:`save_labels`'s file; every kind present (empty if absent,
    e.g. a run directory written before string ids, whose ids are all integers)."""
    out: dict[str, dict[int, str]] = {kind: {} for kind in LABEL_KINDS}
    if not path.is_file():
        return out
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for kind, key, label in zip(
        table.column("kind").to_pylist(),
        table.column("key").to_pylist(),
        table.column("label").to_pylist(),
        strict=True,
    ):
        if kind not in out:
            raise ArtifactError(f"{path}: unknown label kind {kind!r}")
        out[kind][int(key)] = label
    return out

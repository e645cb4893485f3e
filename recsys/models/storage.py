"""Saving and loading model state without pickle: one ``model.json`` plus ``.npz`` arrays.

``model.json`` names the model (so :func:`recsys.models.registry.load_model` knows which class to
build) and holds its params; arrays go to ``arrays.npz`` and are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

META_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
FORMAT_VERSION = 1


class ModelFileError(RuntimeError):
    """A saved model directory is missing files or does not match the model being loaded."""


def write_model_dir(
    directory: Path, name: str, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    np.savez(directory / ARRAYS_FILE, **payload)  # type: ignore[arg-type]
    meta = {"model": name, "format_version": FORMAT_VERSION, "params": dict(params)}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelFileError(f"{directory}: no {META_FILE}; not a saved model directory")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise ModelFileError(f"{path}: missing the 'model' name")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    if not isinstance(meta.get("params", {}), dict):
        raise ModelFileError(f"{path}: 'params' must be an object")
    return meta


def read_model_dir(directory: Path, expected: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return (params, arrays) of a saved model, checking it is the ``expected`` model."""
    meta = read_meta(directory)
    if meta["model"] != expected:
        raise ModelFileError(f"{directory}: holds model {meta['model']!r}, not {expected!r}")
    path = Path(directory) / ARRAYS_FILE
    if not path.is_file():
        raise ModelFileError(f"{directory}: missing {ARRAYS_FILE}")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return dict(meta.get("params", {})), arrays


def csr_to_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def csr_from_arrays(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    try:
        raw_shape = arrays[f"{prefix}_shape"]
        shape = (int(raw_shape[0]), int(raw_shape[1]))
        return sp.csr_matrix(
            (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
            shape=shape,
        )
    except KeyError as exc:
        raise ModelFileError(f"saved model lacks array {exc.args[0]!r}") from None


def require(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return arrays[key]
    except KeyError:
        raise ModelFileError(f"saved model lacks array {key!r}") from None


def as_train_matrix(train: Any) -> sp.csr_matrix:
    """Coerce ``fit`` input to a float32 CSR with sorted, summed indices; reject negatives/NaNs."""
    if not sp.issparse(train):
        raise TypeError(f"fit expects a scipy.sparse users x items matrix, got {type(train).__name__}")
    m = sp.csr_matrix(cast(Any, train), dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    if m.nnz and not np.all(np.isfinite(m.data)):
        raise ValueError("train matrix contains NaN or infinite confidences")
    if m.nnz and m.data.min() < 0:
        raise ValueError("train matrix contains negative confidences; drop or clip negative feedback first")
    m.eliminate_zeros()
    return m

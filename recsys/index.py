"""FAISS retrieval index over item embeddings, built from a factory string.

Why a factory string: the same code serves a 40k-item benchmark with an exact ``Flat`` index and a
million-item catalog with ``HNSW32`` or ``IVF1024,Flat`` — the choice is configuration, and
:func:`exact_recall` measures what an approximate index loses against an exact ``IndexFlatIP``.
Scores are inner products (``metric="ip"``) because the models export ``user_emb @ item_emb.T``.

``MIPS,`` in front of a factory string (e.g. ``MIPS,IVF4096,Flat``) searches inner products through
an L2 index. Why: an IVF index with the inner-product metric partitions un-normalised embeddings
badly (large-norm centroids attract most queries), so it must scan ~10% of a million items to find
95% of the true top 100. The classic reduction (Bachrach et al. 2014, "Speeding up the Xbox recommender
system using a Euclidean transformation for inner-product spaces") appends ``sqrt(M² - |x|²)`` to every
item (``M`` = the largest item norm), which gives all items the norm ``M``, so the nearest item in L2
is the one with the largest inner product; L2 k-means then partitions well (about 4x fewer vectors
scanned for the same recall in ``kolfeed bench serve``). The query side is a FAISS ``LinearTransform``
in front of the L2 index, so the saved file alone describes the index: it maps ``q`` to
``[q, 0, M]`` (that coordinate, 0 for every item, adds the constant ``M²`` to every distance and
keeps ``M`` in the file, which :func:`search` needs to turn L2 distances back into inner products).
Both sides then get zero columns up to a multiple of 8 (``MIPS_ALIGN``), which changes no distance.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from recsys import user_neighbours
from recsys.user_neighbours import DEFAULT_K as USER_NEIGHBOURS_K

DEFAULT_EF_SEARCH = 128
DEFAULT_EF_CONSTRUCTION = 80
DEFAULT_NPROBE = 32

_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
MIPS_PREFIX = "MIPS,"
"""Factory-string prefix: inner-product search through an L2 index over augmented items (see above)."""


class IndexBuildError(ValueError):
    """A bad factory string, metric, or vector array (message says which)."""


def _as_f32(vectors: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise IndexBuildError(f"{what} must be a 2-D array (n, d); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise IndexBuildError(f"{what} must be numeric; got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise IndexBuildError(f"{what} contains NaN or infinite values")
    return out


def set_thread_omp_threads(n: int) -> None:
    """FAISS OpenMP threads for searches made by the CALLING thread only: OpenMP keeps this setting
    per thread, so a model loaded in a helper thread (the service's lifespan) leaves the event-loop
    thread that searches at the default (all cores, spinning). Cheap enough to call per request."""
    faiss.omp_set_num_threads(max(1, int(n)))


def set_search_threads(n: int) -> None:
    """FAISS OpenMP threads and every BLAS library's threads (numpy's and FAISS's own OpenBLAS) for
    this process. 1 is best for serving: a request multiplies a few hundred rows at a time, where
    extra threads only add hand-offs, and idle OpenBLAS threads spin: on the 2-core benchmark two
    worker processes with 2 BLAS threads each burnt ~3x the CPU per feed of one thread each."""
    from threadpoolctl import threadpool_limits

    set_thread_omp_threads(n)  # for this thread; FeedRanker.rank sets it in the ranking thread too
    threadpool_limits(limits=max(1, int(n)), user_api="blas")


def set_search_params(
    index: faiss.Index, ef_search: int | None = None, nprobe: int | None = None
) -> faiss.Index:
    """Set efSearch (HNSW) / nprobe (IVF) on ``index`` where they apply; others are left alone."""
    hnsw = _find_hnsw(index)
    if hnsw is not None and ef_search is not None:
        hnsw.hnsw.efSearch = int(ef_search)
    ivf = _find_ivf(index)
    if ivf is not None and nprobe is not None:
        ivf.nprobe = int(min(nprobe, ivf.nlist))
    return index


def _unwrap(index: faiss.Index) -> faiss.Index:
    """Strip pre-transforms (``PCA64,HNSW32``) and refinement (``...,RFlat``) to reach the index that
    searches (where efSearch / nprobe live)."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform | faiss.IndexRefine):
        inner = index.index if isinstance(index, faiss.IndexPreTransform) else index.base_index
        index = faiss.downcast_index(inner)
    return index


def _find_hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    inner = _unwrap(index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def _find_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    inner = _unwrap(index)
    return inner if isinstance(inner, faiss.IndexIVF) else None


def _sq_norms(xb: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", xb, xb, dtype=np.float64)


MIPS_ALIGN = 8
"""The augmented dimension is rounded up to a multiple of this with zero columns. Why: FAISS's SIMD
scalar-quantizer kernels (``SQfp16``, ``SQ8``) need ``d % 8 == 0``; at 64 + 2 = 66 dimensions
``MIPS,IVF4096,SQfp16`` fell back to a scalar path, 3x slower than ``Flat``, and at 72 it searched 1M
items ~30% faster than ``Flat`` at the same recall (measured on the ``kolfeed bench serve`` catalog)."""


def mips_dim(d: int) -> int:
    """The L2 index's dimension for ``d``-dimensional items: ``d + 2`` rounded up to ``MIPS_ALIGN``."""
    return -(-(d + 2) // MIPS_ALIGN) * MIPS_ALIGN


def mips_items(xb: np.ndarray) -> tuple[np.ndarray, float]:
    """Items as the L2 index stores them, ``[x, sqrt(M² - |x|²), 0, ...]`` (every row has norm ``M``;
    zeros up to ``mips_dim``), and ``M``."""
    n, d = xb.shape
    sq = _sq_norms(xb)
    top = float(sq.max())
    out = np.zeros((n, mips_dim(d)), dtype=np.float32)
    out[:, :d] = xb
    out[:, d] = np.sqrt(np.maximum(top - sq, 0.0))
    return out, float(np.sqrt(top))


def _mips_wrap(inner: faiss.Index, d: int, max_norm: float) -> faiss.Index:
    """``q -> [q, 0, M, 0, ...]`` in front of ``inner`` (which already holds the augmented items)."""
    d_out = inner.d
    lt = faiss.LinearTransform(d, d_out, True)
    a = np.zeros((d_out, d), dtype=np.float32)
    a[np.arange(d), np.arange(d)] = 1.0
    b = np.zeros(d_out, dtype=np.float32)
    b[d + 1] = max_norm
    faiss.copy_array_to_vector(a.ravel(), lt.A)
    faiss.copy_array_to_vector(b, lt.b)
    lt.is_trained = True
    index = faiss.IndexPreTransform(lt, inner)
    index.ntotal = inner.ntotal  # items were added to ``inner`` directly, already augmented
    return index


def mips_max_norm(index: faiss.Index) -> float | None:
    """``M`` of a ``MIPS,`` index (see the module docstring), None for any other index."""
    index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexPreTransform):
        return None
    chain: Any = index.chain  # a SWIG vector (the stubs call it a list)
    if chain.size() != 1:
        return None
    lt = faiss.downcast_VectorTransform(chain.at(0))
    if not isinstance(lt, faiss.LinearTransform) or lt.d_out < lt.d_in + 2 or not lt.have_bias:
        return None
    if index.index.metric_type != faiss.METRIC_L2:
        return None
    return float(faiss.vector_to_array(lt.b)[lt.d_in + 1])  # (files from before the padding: d_out = d + 2)


def build_index(
    vectors: np.ndarray,
    factory: str = "Flat",
    metric: str = "ip",
    ef_search: int = DEFAULT_EF_SEARCH,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    nprobe: int = DEFAULT_NPROBE,
    train_sample: int = 200_000,
    seed: int = 0,
) -> faiss.Index:
    """Build (and train, for IVF/PQ) a FAISS index over ``vectors`` whose ids are row numbers."""
    if metric not in _METRICS:
        raise IndexBuildError(f"unknown metric {metric!r}; expected one of {', '.join(_METRICS)}")
    xb = _as_f32(vectors, "vectors")
    n, d = xb.shape
    if n == 0:
        raise IndexBuildError("cannot build an index over zero vectors")
    if factory.startswith(MIPS_PREFIX):
        if metric != "ip":
            raise IndexBuildError(f"factory {factory!r}: the {MIPS_PREFIX} prefix is for metric 'ip' only")
        inner_factory = factory[len(MIPS_PREFIX) :]
        augmented, max_norm = mips_items(xb)
        inner = build_index(
            augmented, inner_factory, "l2", ef_search, ef_construction, nprobe, train_sample, seed
        )
        return _mips_wrap(inner, d, max_norm)
    try:
        index = faiss.index_factory(d, factory, _METRICS[metric])
    except RuntimeError as exc:
        raise IndexBuildError(f"bad FAISS factory string {factory!r}: {str(exc).splitlines()[-1]}") from exc
    hnsw = _find_hnsw(index)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = int(ef_construction)
    if not index.is_trained:
        ivf = _find_ivf(index)
        if ivf is not None and ivf.nlist > n:
            raise IndexBuildError(
                f"factory {factory!r} wants {ivf.nlist} IVF lists but there are only {n} vectors"
            )
        if n > train_sample:
            rng = np.random.default_rng(seed)
            sample = xb[np.sort(rng.choice(n, size=train_sample, replace=False))]
        else:
            sample = xb
        index.train(sample)
    index.add(xb)
    set_search_params(index, ef_search=ef_search, nprobe=nprobe)
    return index


def save_index(index: faiss.Index, path: str | os.PathLike[str]) -> None:
    """Write atomically (tmp + rename), so a reader never sees half an index."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def load_index(
    path: str | os.PathLike[str], ef_search: int | None = None, nprobe: int | None = None
) -> faiss.Index:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index file")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexBuildError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[-1]})") from exc
    # faiss does not persist efSearch/nprobe; restore the defaults we build with.
    set_search_params(
        index,
        ef_search=DEFAULT_EF_SEARCH if ef_search is None else ef_search,
        nprobe=DEFAULT_NPROBE if nprobe is None else nprobe,
    )
    return index


class _SearchPlan:
    """What :func:`search` needs to know about an index, worked out once per index object: ``M`` of
    a ``MIPS,`` index and the inner index holding nprobe / efSearch, with the search-parameter
    classes that reach it through the pre-transform. Why: finding them walks the index with SWIG
    downcasts (~12 µs per query on the bench index), and the service searches twice per feed."""

    __slots__ = ("_params", "hnsw", "ivf", "max_norm", "wrapped")

    def __init__(self, index: faiss.Index) -> None:
        self.max_norm = mips_max_norm(index)
        top = faiss.downcast_index(index)
        # search parameters reach a bare IVF / HNSW index or one behind a single pre-transform; any
        # other structure (Flat, refinement) is searched with its own settings
        self.wrapped = isinstance(top, faiss.IndexPreTransform)
        searcher = faiss.downcast_index(top.index) if isinstance(top, faiss.IndexPreTransform) else top
        self.ivf = searcher if isinstance(searcher, faiss.IndexIVF) else None
        self.hnsw = searcher if isinstance(searcher, faiss.IndexHNSW) else None
        self._params: dict[int, tuple[faiss.SearchParameters, faiss.SearchParameters]] = {}

    def params(self, effort: float, k: int) -> faiss.SearchParameters | None:
        """Search parameters giving ``effort`` (0 < effort < 1) of the index's own nprobe / efSearch;
        None (the index's settings) for effort >= 1 or an index without either (``Flat``).

        Made once per resulting nprobe / efSearch and kept (read-only, so threads may share them),
        together with the inner parameters a pre-transform's parameters point to: SWIG does not keep
        those alive by itself."""
        if effort >= 1.0:
            return None
        if self.ivf is not None:
            value = max(1, round(self.ivf.nprobe * effort))
        elif self.hnsw is not None:
            value = max(k, round(self.hnsw.hnsw.efSearch * effort))
        else:
            return None
        made = self._params.get(value)
        if made is None:
            inner: Any
            if self.ivf is not None:
                inner = faiss.SearchParametersIVF()
                inner.nprobe = value
            else:
                inner = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in the stubs
                inner.efSearch = value
            outer = inner
            if self.wrapped:
                outer = faiss.SearchParametersPreTransform()
                outer.index_params = inner
            made = self._params[value] = (outer, inner)
        return made[0]


_PLANS: weakref.WeakKeyDictionary[faiss.Index, _SearchPlan] = weakref.WeakKeyDictionary()
"""One plan per live index object (FAISS refuses new attributes on its objects); a reloaded index is
a new object with its own plan, and a freed one drops its plan."""


def _plan(index: faiss.Index) -> _SearchPlan:
    plan = _PLANS.get(index)
    if plan is None:
        plan = _PLANS[index] = _SearchPlan(index)
    return plan


def _search_raw(
    index: faiss.Index, queries: np.ndarray, k: int, effort: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _SearchPlan | None]:
    """(queries as float32, FAISS distances, FAISS ids, the index's plan) of one search; the plan is
    None when nothing was searched (``k`` <= 0 or an empty index: empty results)."""
    xq = _as_f32(np.atleast_2d(queries), "queries")
    if xq.shape[1] != index.d:
        raise IndexBuildError(f"queries have dimension {xq.shape[1]} but the index has {index.d}")
    if not effort > 0:
        raise IndexBuildError(f"search effort must be > 0; got {effort}")
    k = int(k)
    if k <= 0 or index.ntotal == 0:
        return xq, np.zeros((xq.shape[0], 0), np.float32), np.zeros((xq.shape[0], 0), np.int64), None
    plan = _plan(index)
    distances, ids = index.search(xq, k, params=plan.params(effort, k))  # None: the index's own settings
    return xq, distances, ids, plan


def search(
    index: faiss.Index, queries: np.ndarray, k: int, effort: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids), each (n_queries, k); missing slots have id -1 and score -inf.

    ``effort`` < 1 searches with that fraction of the index's nprobe (IVF) or efSearch (HNSW, never
    below ``k``): for queries that need less recall than the main one (exact indexes ignore it)."""
    xq, scores, ids, plan = _search_raw(index, queries, k, effort)
    if plan is None:
        return scores, ids
    max_norm = plan.max_norm
    if max_norm is not None:  # |[q,0,M] - [x,e,0]|² = |q|² + 2M² - 2 q·x
        q_sq = _sq_norms(xq)[:, None]
        scores = (q_sq + 2.0 * max_norm * max_norm - scores) / 2.0
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids.astype(np.int64)


def search_ids(index: faiss.Index, queries: np.ndarray, k: int, effort: float = 1.0) -> np.ndarray:
    """The ids :func:`search` returns, alone (int64, -1 in missing slots).

    Why: the feed ranker uses only the neighbours, and turning a ``MIPS,`` index's distances into
    inner products (|q|², a few array passes) was ~5% of a ranking's CPU on the bench index."""
    _, _, ids, _ = _search_raw(index, queries, k, effort)
    return np.asarray(ids, dtype=np.int64)


def exact_recall(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean fraction of the exact inner-product top-``k`` (IndexFlatIP over ``vectors``) it finds."""
    xb = _as_f32(vectors, "vectors")
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    k = min(int(k), xb.shape[0])
    _, truth = search(exact, queries, k)
    _, found = search(index, queries, k)
    hits = 0
    for t, f in zip(truth, found, strict=True):
        hits += len(np.intersect1d(t[t >= 0], f[f >= 0], assume_unique=True))
    return hits / float(truth.shape[0] * k)


INDEX_INFO = "index.json"


def build_run_index(
    run_dir: str | os.PathLike[str],
    factory: str = "Flat",
    ef_search: int = DEFAULT_EF_SEARCH,
    nprobe: int = DEFAULT_NPROBE,
    recall_queries: int = 1000,
    recall_k: int = 100,
    seed: int = 0,
    user_neighbours_k: int = USER_NEIGHBOURS_K,
) -> dict[str, object]:
    """Build ``index.faiss`` over a verified run's item embeddings, record ``index.json`` (factory,
    parameters, recall@k vs exact on a sample of user vectors, build time), search each user's first
    ``user_neighbours_k`` neighbours in it for the feed (:mod:`recsys.user_neighbours`; 0: none) and
    re-checksum the manifest."""
    import json
    import time

    from recsys import artifacts as A

    run = Path(run_dir)
    manifest = A.verify_run_dir(run)
    items = A.load_array(run / A.ITEM_EMB).astype(np.float32, copy=False)
    users = A.load_array(run / A.USER_EMB).astype(np.float32, copy=False)
    t0 = time.perf_counter()
    index = build_index(items, factory, ef_search=ef_search, nprobe=nprobe, seed=seed)
    build_s = time.perf_counter() - t0
    info: dict[str, object] = {
        "factory": factory,
        "metric": "ip",
        "ef_search": ef_search,
        "nprobe": nprobe,
        "n_items": int(items.shape[0]),
        "dim": int(items.shape[1]),
        "build_seconds": round(build_s, 3),
    }
    if len(users) and recall_queries > 0:
        rng = np.random.default_rng(seed)
        sample = users[np.sort(rng.choice(len(users), size=min(recall_queries, len(users)), replace=False))]
        k = min(recall_k, items.shape[0])
        info[f"recall@{k}_vs_exact"] = round(exact_recall(index, items, sample, k), 5)
        info["recall_queries"] = len(sample)
    save_index(index, run / "index.faiss")
    (run / INDEX_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))
    t0 = time.perf_counter()
    table = user_neighbours.write(run, index, users, user_neighbours_k)
    info["user_neighbours"] = {**table, "seconds": round(time.perf_counter() - t0, 3)}
    A.write_manifest(run, manifest)
    return info

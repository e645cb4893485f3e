"""Model quality/cost benchmark: popularity vs tuned ALS vs the graph filter, side by side in one run.

Measures Recall/NDCG@20 (full ranking, LightGCN protocol), fit and eval seconds and peak RSS per
model, plus how much recall the graph filter's FAISS embeddings lose against its exact scores.
``--synthetic USERSxITEMSxNNZ`` instead times the graph filter on a synthetic power-law matrix of
that size, to check the same settings scale.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

DEFAULT_MODELS = ("popularity", "als", "graphfilter")


class BenchDataError(ValueError):
    """The benchmark data directory is missing or malformed."""


def _read_lightgcn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise BenchDataError(f"{path}: file not found (expected LightGCN format 'user item item ...')")
    users: list[int] = []
    items: list[int] = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(x) for x in parts]
            except ValueError:
                raise BenchDataError(f"{path}:{lineno}: non-integer id in {line.strip()[:60]!r}") from None
            if min(ids) < 0:
                raise BenchDataError(f"{path}:{lineno}: negative id")
            users.extend([ids[0]] * (len(ids) - 1))
            items.extend(ids[1:])
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)


def load_lightgcn(directory: Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Binary (train, test) users x items matrices of a LightGCN-format split (train.txt/test.txt)."""
    tr = _read_lightgcn_file(Path(directory) / "train.txt")
    te = _read_lightgcn_file(Path(directory) / "test.txt")
    n_users = int(max(tr[0].max(initial=-1), te[0].max(initial=-1))) + 1
    n_items = int(max(tr[1].max(initial=-1), te[1].max(initial=-1))) + 1
    if n_users == 0 or n_items == 0:
        raise BenchDataError(f"{directory}: no interactions")

    def build(u: np.ndarray, i: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(n_users, n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    return build(*tr), build(*te)


def synthetic_matrix(n_users: int, n_items: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """Power-law users x items matrix (Zipf-ish item popularity and user activity)."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    item_p /= item_p.sum()
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.5
    user_p /= user_p.sum()
    u = rng.choice(n_users, size=nnz, p=user_p)
    i = rng.permutation(n_items)[rng.choice(n_items, size=nnz, p=item_p)]
    m = sp.csr_matrix((np.ones(nnz, dtype=np.float32), (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


class RssSampler:
    """Peak resident memory of this process, sampled from /proc every 20 ms within a phase."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as fh:
                pages = int(fh.read().split()[1])
            import os

            return pages * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.current())

    @contextmanager
    def phase(self) -> Iterator[RssSampler]:
        self.peak = self.current()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.current())


@dataclass
class ModelResult:
    model: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    eval_seconds: float
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_model(
    name: str, params: Mapping[str, Any], train: sp.csr_matrix, test: sp.csr_matrix, batch_size: int = 2048
) -> ModelResult:
    from recsys.metrics import evaluate
    from recsys.models.registry import create

    model = create(name, params)
    sampler = RssSampler()
    with sampler.phase():
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = evaluate(model, train, test, ks=(20,), batch_size=batch_size, progress=True)
        eval_s = time.perf_counter() - t0
    extra: dict[str, Any] = {}
    if name == "graphfilter":
        user_emb, item_emb = model.user_embeddings(), model.item_embeddings()

        def emb_scorer(users: np.ndarray) -> np.ndarray:
            return np.asarray(user_emb[users] @ item_emb.T, dtype=np.float32)

        emb = evaluate(emb_scorer, train, test, ks=(20,), batch_size=batch_size, progress=True)
        extra = {
            "embedding_dim": int(item_emb.shape[1]),
            "embedding_only": emb,
            "embedding_recall_loss": metrics["recall@20"] - emb["recall@20"],
        }
    describe = model.describe()
    return ModelResult(
        model=name,
        params=dict(describe.get("params", {})),
        metrics=metrics,
        fit_seconds=fit_s,
        eval_seconds=eval_s,
        peak_rss_mb=sampler.peak / 2**20,
        extra=extra,
    )


def _plot(results: list[ModelResult], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.model for r in results]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(x - 0.2, [r.metrics["recall@20"] for r in results], 0.4, label="Recall@20")
    axes[0].bar(x + 0.2, [r.metrics["ndcg@20"] for r in results], 0.4, label="NDCG@20")
    axes[0].axhline(0.1830, color="C0", ls="--", lw=0.8, label="LightGCN recall .1830")
    axes[0].axhline(0.1554, color="C1", ls=":", lw=0.8, label="LightGCN ndcg .1554")
    axes[0].set_title("quality")
    axes[0].legend(fontsize=7)
    axes[1].bar(x - 0.2, [r.fit_seconds for r in results], 0.4, label="fit")
    axes[1].bar(x + 0.2, [r.eval_seconds for r in results], 0.4, label="eval (all users)")
    axes[1].set_title("seconds")
    axes[1].legend(fontsize=7)
    axes[2].bar(x, [r.peak_rss_mb for r in results], 0.5)
    axes[2].set_title("peak RSS (MB)")
    for ax in axes:
        ax.set_xticks(x, names)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def bench_models(
    data: Path,
    out_dir: Path,
    models: list[str],
    overrides: Mapping[str, Mapping[str, Any]],
    tag: str | None = None,
) -> dict[str, Any]:
    train, test = load_lightgcn(data)
    results: list[ModelResult] = []
    for name in models:
        results.append(run_model(name, overrides.get(name, {}), train, test))
    tag = tag or Path(data).name
    report = {
        "data": str(data),
        "n_users": int(train.shape[0]),
        "n_items": int(train.shape[1]),
        "n_train": int(train.nnz),
        "n_test": int(test.nnz),
        "protocol": "full ranking, train items excluded, users without test items skipped",
        "results": [r.__dict__ for r in results],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"models_{tag}.json").write_text(json.dumps(report, indent=2))
    _plot(
        results,
        out_dir / f"models_{tag}.png",
        f"models on {tag} ({train.shape[0]} users, {train.shape[1]} items)",
    )
    return report


def bench_synthetic(
    shape: tuple[int, int, int], out_dir: Path, params: Mapping[str, Any], score_users: int = 4096
) -> dict[str, Any]:
    """Fit the graph filter on a synthetic matrix and time scoring a user sample (extrapolated)."""
    from recsys.metrics import top_k_excluding
    from recsys.models.registry import create

    n_users, n_items, nnz = shape
    t0 = time.perf_counter()
    train = synthetic_matrix(n_users, n_items, nnz)
    gen_s = time.perf_counter() - t0
    model = create("graphfilter", params)
    sampler = RssSampler()
    with sampler.phase():
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        users = np.arange(min(score_users, n_users))
        t0 = time.perf_counter()
        for s in range(0, len(users), 2048):
            batch = users[s : s + 2048]
            top_k_excluding(model.score(batch), train[batch], 20)
        score_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.user_embeddings()
        model.item_embeddings()
        emb_s = time.perf_counter() - t0
    report = {
        "shape": {"users": n_users, "items": n_items, "interactions_requested": nnz, "nnz": int(train.nnz)},
        "params": model.describe()["params"],
        "generate_seconds": gen_s,
        "fit_seconds": fit_s,
        "score_seconds_sample": score_s,
        "score_users_sample": len(users),
        "score_seconds_all_users_extrapolated": score_s * n_users / max(1, len(users)),
        "embedding_export_seconds": emb_s,
        "peak_rss_mb": sampler.peak / 2**20,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "models_synthetic.json").write_text(json.dumps(report, indent=2))
    return report


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``model.key=value`` strings (value parsed as JSON, else kept as a string) into per-model dicts."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        model, dot, param = key.partition(".")
        if not sep or not dot or not model or not param:
            raise BenchDataError(f"--set {item!r}: expected model.key=value, e.g. graphfilter.factors=256")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(model, {})[param] = value
    return out

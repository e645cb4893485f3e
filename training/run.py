"""One training run: load → build graphs → fit → evaluate → export a run directory.

Why a temp dir + rename: the run directory is the only hand-off to serving, so it must appear whole or
not at all. Everything is written into ``OUT/.tmp-<run id>`` and renamed into place after the manifest
(with the sha256 of every file) is written; any failure removes the temp dir.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys import artifacts as art
from recsys.io.report import RowsReport
from training.config import ConfigError, TrainConfig, config_from_dict
from training.data import Prepared, data_fingerprint, prepare
from training.export import write_embeddings, write_json, write_labels, write_world
from training.logs import Stages, close_logger, run_logger

STAGES = ["load", "fit", "evaluate", "export"]
REFIT_STAGE = "refit"
"""Between evaluate and export when ``export.refit_on_all_events`` is set."""


class TrainError(RuntimeError):
    """A run failed for a reason the user can act on (message is one line)."""


@dataclass
class RunResult:
    run_dir: Path
    version: int
    run_id: str
    metrics: dict[str, Any]
    data_rows: RowsReport | None = None


def create_model(cfg: TrainConfig) -> Any:
    from recsys.models import registry
    from recsys.models.params import ModelConfigError

    if cfg.model.name not in registry.MODELS:
        raise ConfigError(
            f"model.name: unknown model {cfg.model.name!r}; "
            f"expected one of {', '.join(sorted(registry.MODELS))}"
        )
    params = dict(cfg.model.params)
    params_cls = registry.params_class(cfg.model.name)
    if "random_state" not in params and "random_state" in getattr(params_cls, "model_fields", {}):
        params["random_state"] = cfg.seed  # the run's seed seeds the model unless set explicitly
    try:
        return registry.create(cfg.model.name, params)
    except ModelConfigError as exc:
        msg = str(exc)
        named = [k for k in params if repr(k) in msg or f"{k}:" in msg]
        where = f"model.params.{named[0]}" if named else "model.params"
        raise ConfigError(f"{where}: {msg}") from None


def evaluate_all(
    model: Any, prepared: Prepared, cfg: TrainConfig, progress: bool = False
) -> dict[str, float]:
    """Overall metrics on held-out positives, plus ``<behaviour>/<metric>`` per held-out behaviour.

    Every variant is masked with the same ``seen`` matrix (all positive training pairs), so graph
    variants (e.g. clicks only vs all behaviours) are ranked and scored on identical sets."""
    from recsys.metrics import evaluate

    ks = tuple(cfg.eval.ks)
    bs = cfg.eval.batch_size
    inter = prepared.interactions
    users = eval_users(prepared, cfg)
    raw = evaluate(model, prepared.seen, inter.test, ks=ks, batch_size=bs, users=users, progress=progress)
    out: dict[str, float] = {k: float(v) for k, v in raw.items()}
    out["eval_users"] = float(len(users) if users is not None else _n_test_users(inter.test))
    if cfg.eval.per_behaviour:
        for name, held in inter.extra_test.items():
            if held.nnz == 0:
                continue
            sub = evaluate(model, prepared.seen, held, ks=ks, batch_size=bs, users=users, progress=progress)
            out.update({f"{name}/{k}": float(v) for k, v in sub.items()})
    return out


def _n_test_users(test: Any) -> int:
    return int(np.count_nonzero(np.diff(test.indptr)))


def eval_users(prepared: Prepared, cfg: TrainConfig) -> np.ndarray | None:
    """The seeded sample of test users when ``eval.max_users`` caps evaluation, else None (all)."""
    limit = cfg.eval.max_users
    test = prepared.interactions.test
    with_test = np.flatnonzero(np.diff(test.indptr))
    if limit is None or len(with_test) <= limit:
        return None
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(with_test, size=limit, replace=False))


def _curve(model: Any, fit_seconds: float) -> list[dict[str, Any]]:
    curve = getattr(model, "curve", None)
    if curve is None:
        curve = getattr(model, "history", None)
    if isinstance(curve, list) and all(isinstance(c, dict) for c in curve):
        return curve
    return [{"step": 1, "fit_seconds": fit_seconds}]


def _world_exports(prepared: Prepared, cfg: TrainConfig, item_emb: np.ndarray, user_emb: np.ndarray) -> Any:
    from recsys.affinity import AffinityWeights, affinity_top_n, kol_embeddings

    wg = prepared.world
    assert wg is not None
    kol_emb = kol_embeddings(item_emb, wg.post_kol, wg.post_item, len(wg.kol_ids), wg.post_engagement)
    a = cfg.affinity
    weights = AffinityWeights(a.follow, a.engagement, a.friends_bought, a.similarity)
    affinity = affinity_top_n(wg.follows, wg.engagement, wg.friend_buys, user_emb, kol_emb, weights, a.top_n)
    return kol_emb, affinity


def open_engine(cfg: TrainConfig, log: Any = None) -> Any:
    """The Spark engine for ``engine.name: spark`` (imported only then), None for the local engine."""
    if cfg.engine.name == "local":
        return None
    from training.spark.engine import SparkEngine

    return SparkEngine(cfg, log)


def prepare_with_engine(cfg: TrainConfig) -> Prepared:
    """The run's data, rebuilt by the engine that trained it (``kolfeed eval`` of a Spark run uses Spark)."""
    engine = open_engine(cfg)
    return engine.prepare() if engine is not None else prepare(cfg)


def train(cfg: TrainConfig, out_root: Path, quiet: bool = False, fail_after: str | None = None) -> RunResult:
    """Run the pipeline and return the finished run directory. ``fail_after`` (tests only) raises after
    the named stage to prove that a failed run leaves nothing behind."""
    model = create_model(cfg)  # bad model names/params fail here, before anything is written
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    version = art.next_version(out_root)
    run_id = art.new_run_id(f"{cfg.name}-v{version}")
    tmp = out_root / f".tmp-{run_id}-{os.getpid()}"
    final = out_root / run_id
    if final.exists():
        raise TrainError(f"{final} already exists")
    tmp.mkdir()
    log = run_logger(tmp / art.LOG, quiet=quiet)
    refit = cfg.export.refit_on_all_events
    stages = Stages([*STAGES[:-1], REFIT_STAGE, STAGES[-1]] if refit else STAGES, log, disable=quiet)
    try:
        log.info(
            "run %s (version %d), model %s, data %s (%s)",
            run_id,
            version,
            cfg.model.name,
            cfg.data.path,
            cfg.data.format,
        )
        np.random.seed(cfg.seed)
        engine = open_engine(cfg, log)
        with stages.stage("load"):
            if engine is not None:  # Spark: rows are counted (and the threshold checked) before building
                _check_rows(engine.read(), cfg, log)
                prepared = engine.prepare()
            else:
                prepared = prepare(cfg)
            fingerprint = data_fingerprint(Path(cfg.data.path), cfg.data.events_log, cfg.data.events_path)
            log.info("data: %s", prepared.stats)
            if prepared.log_intake is not None:
                log.info("%s", prepared.log_intake.summary())
            if engine is None:
                _check_rows(prepared.rows, cfg, log)
        _maybe_fail(fail_after, "load")
        with stages.stage("fit"):
            t0 = time.perf_counter()
            if engine is not None:
                engine.fit(model, prepared)
            else:
                model.fit(prepared.interactions.train)
            fit_seconds = time.perf_counter() - t0
        _maybe_fail(fail_after, "fit")
        with stages.stage("evaluate"):
            t0 = time.perf_counter()
            metrics: dict[str, Any] = dict(evaluate_all(model, prepared, cfg, progress=not quiet))
            eval_seconds = time.perf_counter() - t0
            metrics["fit_seconds"] = fit_seconds
            metrics["eval_seconds"] = eval_seconds
            log.info("metrics: %s", {k: round(v, 5) for k, v in metrics.items()})
        _maybe_fail(fail_after, "evaluate")
        evaluated = prepared
        if refit:
            with stages.stage(REFIT_STAGE):
                prepared, model, metrics["refit_seconds"] = _refit(cfg, evaluated)
                log.info("refit on all events: %s", prepared.stats)
        with stages.stage("export"):
            _export(tmp, model, prepared, cfg, fit_seconds)
        _maybe_fail(fail_after, "export")
        metrics["load_seconds"] = stages.seconds.get("load", 0.0)
        write_json(tmp / art.METRICS, {**metrics, **{f"data_{k}": v for k, v in evaluated.stats.items()}})
        log.info("run directory: %s", final)
        close_logger(log)
        manifest = art.Manifest(
            run_id=run_id,
            version=version,
            created_at=time.time(),
            config=cfg.model_dump(mode="json"),
            data_fingerprint=fingerprint,
            metrics=metrics,
            libraries=art.library_versions(),
            data_rows=prepared.rows.to_dict() if prepared.rows is not None else {},
        )
        art.write_manifest(tmp, manifest)
        os.rename(tmp, final)
    except BaseException:
        close_logger(log)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        stages.close()
    return RunResult(run_dir=final, version=version, run_id=run_id, metrics=metrics, data_rows=prepared.rows)


def _check_rows(rows: RowsReport | None, cfg: TrainConfig, log: Any) -> None:
    """Log what the load kept and skipped; fail the run (showing that report) above the threshold."""
    if rows is None:
        return
    for line in rows.lines():
        log.info("%s", line)
    limit = cfg.data.max_skipped_fraction
    if rows.skipped_fraction > limit:
        report = "\n".join(rows.lines())
        raise TrainError(
            f"{rows.skipped_fraction:.2%} of the rows read were skipped, more than "
            f"data.max_skipped_fraction={limit} allows (fix the data, or raise it):\n{report}"
        )


def _refit(cfg: TrainConfig, held_out: Prepared) -> tuple[Prepared, Any, float]:
    """``export.refit_on_all_events``: a fresh model fitted on every event, with the same id maps."""
    everything = prepare(cfg, holdout=False)
    for name in ("user_ids", "item_ids"):
        if not np.array_equal(getattr(everything.interactions, name), getattr(held_out.interactions, name)):
            raise TrainError(f"refit: the {name} map changed between the two reads of the data")
    model = create_model(cfg)
    t0 = time.perf_counter()
    model.fit(everything.interactions.train)
    return everything, model, time.perf_counter() - t0


def _maybe_fail(fail_after: str | None, stage: str) -> None:
    if fail_after == stage:
        raise TrainError(f"injected failure after stage {stage!r}")


def _export(
    tmp: Path,
    model: Any,
    prepared: Prepared,
    cfg: TrainConfig,
    fit_seconds: float,
) -> None:
    from recsys.index import build_index, save_index

    user_emb = np.array(model.user_embeddings(), dtype=np.float32)
    item_emb = np.asarray(model.item_embeddings(), dtype=np.float32)
    # a user with no training interaction has no taste to show: a zero row, whatever the model's
    # initialisation left there, so that serving treats them as cold rather than searching on noise
    user_emb[np.diff(prepared.interactions.train.indptr) == 0] = 0.0
    write_embeddings(tmp, prepared, user_emb, item_emb)
    write_labels(tmp, prepared)
    if prepared.world is not None:
        kol_emb, affinity = _world_exports(prepared, cfg, item_emb, user_emb)
        write_world(tmp, prepared, kol_emb, affinity, catalog=cfg.export.catalog)
    (tmp / art.MODEL_DIR).mkdir()
    model.save(tmp / art.MODEL_DIR)
    index = build_index(item_emb, cfg.export.index_factory, seed=cfg.seed)
    save_index(index, tmp / art.INDEX)
    if cfg.export.user_neighbours:
        from recsys import user_neighbours

        user_neighbours.write(tmp, index, user_emb, cfg.export.user_neighbours)
    describe = {}
    try:
        describe = dict(model.describe())
    except Exception:  # describe() is informational only
        describe = {}
    write_json(tmp / art.CURVE, _curve(model, fit_seconds))
    write_json(tmp / "model.json", {"name": cfg.model.name, "describe": describe})


# ---------------------------------------------------------------- re-evaluation and listing


def was_refit(run_dir: Path) -> bool:
    """Whether the run's model was fitted again on every event (``export.refit_on_all_events``), so
    that evaluating it on the held-out split is in-sample."""
    config = art.read_manifest(Path(run_dir)).config
    return bool(config.get("export", {}).get("refit_on_all_events", False))


def reevaluate(run_dir: Path) -> tuple[dict[str, float], dict[str, Any], bool]:
    """Verify the run dir, rebuild its data, reload its model and evaluate again.

    Returns (new metrics, recorded metrics, whether the data fingerprint still matches)."""
    from recsys.models.registry import load_model

    manifest = art.verify_run_dir(Path(run_dir))
    cfg = config_from_dict(manifest.config, source=f"{run_dir}/manifest.json")
    prepared = prepare_with_engine(cfg)
    same_data = (
        data_fingerprint(Path(cfg.data.path), cfg.data.events_log, cfg.data.events_path)
        == manifest.data_fingerprint
    )
    model = load_model(Path(run_dir) / art.MODEL_DIR)
    metrics = evaluate_all(model, prepared, cfg)
    return metrics, dict(manifest.metrics), same_data


def reevaluate_pipeline(
    run_dir: Path,
    variant_name: str = "default",
    ranking_dir: Path = Path("configs/ranking"),
    quiet: bool = False,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Score what the service would serve (FAISS candidates + ranker + filters, the serving code) on
    the run's test split, beside the model's own full-ranking metrics.

    Returns (pipeline metrics, full-ranking metrics)."""
    from recsys.models.registry import load_model
    from recsys.pipeline_eval import evaluate_pipeline
    from recsys.ranking.variants import load_variants

    manifest = art.verify_run_dir(Path(run_dir))
    variants = load_variants(ranking_dir)
    if variant_name not in variants:
        raise ValueError(f"unknown ranking variant {variant_name!r}; have {', '.join(sorted(variants))}")
    cfg = config_from_dict(manifest.config, source=f"{run_dir}/manifest.json")
    prepared = prepare_with_engine(cfg)
    model = load_model(Path(run_dir) / art.MODEL_DIR)
    full = evaluate_all(model, prepared, cfg)
    inter = prepared.interactions
    pipeline = evaluate_pipeline(
        Path(run_dir),
        variants[variant_name],
        prepared.seen,
        inter.test,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        ks=cfg.eval.ks,
        users=eval_users(prepared, cfg),
        progress=not quiet,
    )
    return pipeline, full


def list_runs(out_root: Path) -> list[dict[str, Any]]:
    """One row per run directory under ``out_root`` (unreadable ones reported as such), by version."""
    rows: list[dict[str, Any]] = []
    root = Path(out_root)
    if not root.is_dir():
        return rows
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not (child / art.MANIFEST).is_file():
            continue
        try:
            m = art.read_manifest(child)
        except art.ArtifactError as exc:
            rows.append({"version": -1, "run_id": child.name, "error": str(exc)})
            continue
        cfg = m.config
        rows.append(
            {
                "version": m.version,
                "run_id": m.run_id,
                "model": cfg.get("model", {}).get("name", "?"),
                "dataset": f"{Path(str(cfg.get('data', {}).get('path', '?'))).name}"
                f" ({cfg.get('data', {}).get('format', '?')})",
                "recall@20": m.metrics.get("recall@20"),
                "ndcg@20": m.metrics.get("ndcg@20"),
                "buy_recall@20": m.metrics.get("buy/recall@20"),
                "fit_seconds": m.metrics.get("fit_seconds"),
                "path": str(child),
            }
        )
    rows.sort(key=lambda r: (r["version"], r["run_id"]))
    return rows


def format_runs(rows: list[dict[str, Any]]) -> str:
    headers = ["version", "run_id", "model", "dataset", "recall@20", "ndcg@20", "buy_recall@20", "fit_s"]
    keys = ["version", "run_id", "model", "dataset", "recall@20", "ndcg@20", "buy_recall@20", "fit_seconds"]

    def cell(row: dict[str, Any], key: str) -> str:
        if "error" in row and key not in ("version", "run_id"):
            return "ERROR" if key == "model" else ""
        v = row.get(key)
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}" if key == "fit_seconds" else f"{v:.4f}"
        return str(v)

    table = [headers] + [[cell(r, k) for k in keys] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )

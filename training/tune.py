"""`kolfeed tune`: fit a model's hyper-parameters to the data in front of it, inside a time budget.

Why: parameters fitted to one dataset lose to simple baselines on data of another shape. The tune
searches the spaces declared next to each model's params (``recsys.models.*.SEARCH_SPACE``) with a
seeded TPE sampler and a median pruner, on a validation split carved from the *training* data only
(:func:`recsys.validation.holdout_split`; the test split is never read into the objective), and
writes ``DIR/best.yaml``: a complete train config that ``kolfeed train`` fits on the full training
data and evaluates on test.

Cost: trials score a seeded sample of validation users; graph-filter trials share one SVD and the
cached sparse products of :class:`recsys.models.graphfilter_sweep.FilterSweep`, so a trial costs a few
dense products. The budget (``tune.budget_seconds`` or ``--timeout``) covers the tune *and* the final
train: before each trial the tune checks that the trial's expected time plus an estimate of the final
``kolfeed train`` (load, fit on all training data, exact scoring of the test users) still fits.

The study lives in ``DIR/study.db`` (SQLite), so an interrupted tune resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml

from training.config import ConfigError, TrainConfig, TuneConfig

STUDY_NAME = "kolfeed-tune"
STUDY_FILE = "study.db"
USERS_FILE = "validation_users.npy"
"""The validation users the trials were scored on (so a check can score best.yaml the same way)."""
FAST_GRAPHFILTER_PARAMS = frozenset({"factors", "ideal_weight", "blur_time", "sharpen_time"})
"""Graph-filter params a :class:`FilterSweep` varies without refitting."""
MAX_REFUSED = 12
"""Stop after this many settings in a row were refused because their final train would not fit."""
CHUNKS = 4
"""A trial scores its user sample in this many chunks, reporting the running objective to the pruner."""
STARTUP_SECONDS = 8.0
"""Interpreter start and imports of the final ``kolfeed train`` (part of its estimate)."""
MAX_FACTORS_OVER_ADAPTIVE = 1.5
"""The graph filter's factors are searched up to this multiple of the data-adaptive value."""
PROBE_FACTORS = 32
SVD_SHARE = 0.3
"""Share of the budget the sweep's SVD and the final train's SVD may take together."""
SAFETY = 1.3
"""Multiplier on every estimated duration: the machine is shared, timings wander."""


class TuneError(RuntimeError):
    """The tune cannot proceed for a reason the user can act on (message is one line)."""


@dataclass
class ValidationData:
    """What every trial is scored on: the validation split and the seeded user sample."""

    train: sp.csr_matrix
    valid: sp.csr_matrix
    seen: sp.csr_matrix
    users: np.ndarray
    chronological: bool
    full_nnz: int
    n_users: int


@dataclass
class TuneResult:
    out_dir: Path
    best_yaml: Path
    best_value: float
    best_model: str
    best_params: dict[str, Any]
    n_trials: int
    summary: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- spaces


def resolve_spaces(tc: TuneConfig) -> dict[str, Any]:
    """model -> search space: the declared one, with ranges replaced from ``tune.spaces``."""
    from recsys.models import registry
    from recsys.models.space import SpaceError, check_space, parse_space

    unknown = sorted(set(tc.spaces) - set(tc.models))
    if unknown:
        raise ConfigError(f"tune.spaces: {', '.join(unknown)} is not in tune.models")
    out: dict[str, Any] = {}
    for name in tc.models:
        if name not in registry.MODELS:
            raise ConfigError(
                f"tune.models: unknown model {name!r}; expected one of {', '.join(sorted(registry.MODELS))}"
            )
        try:
            space = dict(registry.search_space(name))
            space.update(parse_space(tc.spaces.get(name, {}), f"tune.spaces.{name}"))
            check_space(name, registry.params_class(name), space)
        except SpaceError as exc:
            raise ConfigError(str(exc)) from None
        out[name] = space
    return out


def _suggest(trial: Any, key: str, dim: Any) -> Any:
    from recsys.models.space import Choice, FloatRange

    if isinstance(dim, Choice):
        return trial.suggest_categorical(key, list(dim.values))
    if isinstance(dim, FloatRange):
        return trial.suggest_float(key, dim.low, dim.high, log=dim.log)
    return trial.suggest_int(key, dim.low, dim.high, log=dim.log)


def _clip(dim: Any, value: Any) -> Any:
    from recsys.models.space import Choice, IntRange

    if isinstance(dim, Choice):
        return value if value in dim.values else dim.values[0]
    v = min(max(value, dim.low), dim.high)
    return round(v) if isinstance(dim, IntRange) else float(v)


# ---------------------------------------------------------------- validation data


def validation_data(cfg: TrainConfig) -> tuple[ValidationData, float]:
    """Load the data, carve the validation split from its training part, sample the scored users.

    Returns the data and the load seconds. Only ``interactions.train`` (and its timestamps) is used."""
    from recsys.validation import holdout_split
    from training.data import prepare

    tc = cfg.tune or TuneConfig()
    t0 = time.perf_counter()
    prepared = prepare(cfg)
    load_seconds = time.perf_counter() - t0
    inter = prepared.interactions
    train, train_time = inter.train, inter.train_time
    del prepared, inter  # the test split goes out of scope here: nothing below can read it
    split = holdout_split(train, tc.validation_fraction, cfg.seed, train_time)
    with_valid = np.flatnonzero(np.diff(split.valid.indptr))
    if len(with_valid) == 0:
        raise TuneError("no user has two or more training interactions: nothing to validate on")
    users = with_valid
    if len(users) > tc.max_users:
        rng = np.random.default_rng(cfg.seed)
        users = np.sort(rng.choice(with_valid, size=tc.max_users, replace=False))
    data = ValidationData(
        train=split.train,
        valid=split.valid,
        seen=split.seen,
        users=users,
        chronological=split.chronological,
        full_nnz=int(train.nnz),
        n_users=int(train.shape[0]),
    )
    return data, load_seconds


def objective_of(metrics: Mapping[str, float], names: list[str]) -> float:
    return float(np.mean([metrics[n] for n in names]))


def score_users(
    scorer: Callable[[np.ndarray], np.ndarray],
    data: ValidationData,
    ks: tuple[int, ...],
    objective: list[str],
    report: Callable[[float, int], None] | None = None,
) -> dict[str, float]:
    """Metrics of ``scorer`` on the sampled validation users, in chunks; ``report(value, step)`` gets
    the running objective after each chunk (the pruner's hook, it may raise to stop)."""
    from recsys.metrics import evaluate

    sums: dict[str, float] = {}
    done = 0
    for step, chunk in enumerate(np.array_split(data.users, min(CHUNKS, len(data.users)))):
        part = evaluate(scorer, data.seen, data.valid, ks=ks, batch_size=1024, users=chunk)
        for key, value in part.items():
            sums[key] = sums.get(key, 0.0) + value * len(chunk)
        done += len(chunk)
        if report is not None:
            report(objective_of({k: v / done for k, v in sums.items()}, objective), step)
    return {k: v / done for k, v in sums.items()}


# ---------------------------------------------------------------- the tuner


class _OutOfBudget(Exception):
    pass


class Tuner:
    """One tune: the validation data, the cached graph-filter pieces, the study and the clock."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, budget: float, started: float) -> None:
        self.cfg = cfg
        self.tc = cfg.tune or TuneConfig()
        self.out_dir = out_dir
        self.budget = budget
        self.started = started
        self.spaces = resolve_spaces(self.tc)
        self.ks = tuple(sorted({int(n.split("@")[1]) for n in self.tc.objective} | set(cfg.eval.ks)))
        self.data, self.load_seconds = validation_data(cfg)
        self.sweep: Any = None
        self.fit_seconds: dict[str, float] = {}  # model -> latest fit seconds on validation-train
        self.trial_seconds: dict[str, list[float]] = {}
        self.eval_seconds_per_user: dict[str, float] = {}
        self._prepare_sweep()

    # -- graph filter cache
    def _base_params(self, name: str) -> dict[str, Any]:
        from recsys.models.registry import params_class

        base = dict(self.cfg.model.params) if self.cfg.model.name == name else {}
        if "random_state" in getattr(params_class(name), "model_fields", {}):
            base.setdefault("random_state", self.cfg.seed)
        return base

    def _prepare_sweep(self) -> None:
        if "graphfilter" not in self.spaces:
            return
        from recsys.models.graphfilter import GraphFilterParams
        from recsys.models.graphfilter_sweep import filter_polynomials
        from recsys.models.space import IntRange

        space = self.spaces["graphfilter"]
        if not set(space) <= FAST_GRAPHFILTER_PARAMS:
            return  # steps/solver searched: each trial refits (slower, still correct)
        base = self._base_params("graphfilter")
        probe = GraphFilterParams.model_validate({**base, "blur_time": 1.0, "sharpen_time": 1.0})
        linear, ideal = filter_polynomials(probe)
        degree, ideal_degree = len(linear) - 1, len(ideal) - 1
        n_users, n_items = self.data.train.shape
        dim = space.get("factors")
        high = dim.high if isinstance(dim, IntRange) else int(base.get("factors") or 0)
        from recsys.models.adaptive import DataShape, adaptive_factors

        adaptive = adaptive_factors("graphfilter", DataShape.of(self.data.train))
        kmax = min(high, int(MAX_FACTORS_OVER_ADAPTIVE * adaptive)) if high > 0 else adaptive
        budget = self.tc.memory_mb * 2**20
        per_factor = 4 * n_items * (ideal_degree + 1)
        kmax = max(1, min(kmax, min(n_users, n_items) - probe.svd_oversample - 1, budget // 2 // per_factor))
        kmax = self._affordable_rank(kmax, base, probe.svd_oversample)
        per_user = 4 * n_items * (degree + 1 + 2)  # the blocks plus a trial's output and top-k copy
        room = max(16, (budget - kmax * per_factor) // per_user)
        if len(self.data.users) > room:
            rng = np.random.default_rng(self.cfg.seed + 1)
            self.data.users = np.sort(rng.choice(self.data.users, size=int(room), replace=False))
        from recsys.models.graphfilter_sweep import FilterSweep

        self.sweep = FilterSweep(
            self.data.train, self.data.users, kmax, degree, ideal_degree, base={**base, "factors": kmax}
        )
        self.fit_seconds["graphfilter"] = self.sweep.seconds - self.sweep.block_seconds
        top = self.sweep.max_factors
        if isinstance(dim, IntRange) and dim.high > top:  # search only ranks the cached SVD holds
            space["factors"] = IntRange(min(dim.low, top), top, dim.log)

    def _affordable_rank(self, kmax: int, base: Mapping[str, Any], oversample: int) -> int:
        """Shrink the sweep's SVD rank until two SVDs (the sweep's and the final train's) fit
        ``SVD_SHARE`` of the budget, extrapolated from a timed small SVD as (rank ratio)^1.5."""
        from recsys.models.graphfilter import GraphFilter

        probe_k = min(kmax, PROBE_FACTORS)
        t0 = time.perf_counter()
        probe = GraphFilter({**base, "factors": probe_k, "early_merge": False, "sharpen_time": 0.0})
        probe.fit(self.data.train)
        fixed = time.perf_counter() - t0 - probe.svd_seconds  # normalisation etc., rank-independent

        def cost(k: int) -> float:
            return fixed + probe.svd_seconds * ((k + oversample) / (probe_k + oversample)) ** 1.5

        while kmax > probe_k and 2 * cost(kmax) > SVD_SHARE * self.budget:
            kmax = max(probe_k, int(kmax * 0.85))
        return kmax

    # -- clock
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def final_estimate(self, model: str, params: Mapping[str, Any] | None = None) -> float:
        """Seconds the final ``kolfeed train`` of ``model`` (with ``params``, for the graph filter's
        polynomial degree) is expected to take, with the safety factor."""
        scale = self.data.full_nnz / max(1, self.data.train.nnz)
        fit = self.fit_seconds.get(model, 0.0) * scale
        eval_users = self.data.n_users
        if self.cfg.eval.max_users is not None:
            eval_users = min(eval_users, self.cfg.eval.max_users)
        per_user = self.eval_seconds_per_user.get(model, 0.0)
        if model == "graphfilter" and self.sweep is not None:
            share = 1.0
            if params is not None:
                from recsys.models.graphfilter import GraphFilterParams
                from recsys.models.graphfilter_sweep import filter_polynomials

                linear, _ = filter_polynomials(GraphFilterParams.model_validate(params))
                share = max(1, len(linear) - 1) / max(1, self.sweep.degree)
            per_user += self.sweep.seconds_per_user_scored * scale * share
        return SAFETY * (STARTUP_SECONDS + self.load_seconds + fit * 1.1 + per_user * eval_users)

    def expected_trial(self, model: str) -> float:
        times = self.trial_seconds.get(model)
        return SAFETY * max(times[-3:]) if times else 0.0

    # -- one trial
    def run_trial(self, trial: Any, reserve_for: Callable[[str], float], must_finish: bool = False) -> float:
        import optuna

        from recsys.models.registry import create

        models = list(self.spaces)
        name = trial.suggest_categorical("model", models) if len(models) > 1 else models[0]
        t0 = time.perf_counter()
        params = {p: _suggest(trial, f"{name}.{p}", dim) for p, dim in self.spaces[name].items()}
        merged = {**self._base_params(name), **params}
        own = self.final_estimate(name, merged if name == "graphfilter" else None)
        left = self.budget - self.elapsed() - max(reserve_for(name), own)
        if self.expected_trial(name) > left and not must_finish:
            raise _OutOfBudget(name)  # if it won, its final train would not fit either

        def report(value: float, step: int) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        scorer: Callable[[np.ndarray], np.ndarray]
        if name == "graphfilter" and self.sweep is not None:
            sweep = self.sweep
            complete = sweep.model_params(merged)
            users = self.data.users

            def sweep_scorer(batch: np.ndarray) -> np.ndarray:
                pos = np.searchsorted(users, batch)
                return np.asarray(sweep.score(complete, rows=slice(int(pos[0]), int(pos[-1]) + 1)))

            scorer = sweep_scorer

            fit_s = 0.0
        else:
            model = create(name, merged)
            tf = time.perf_counter()
            model.fit(self.data.train)
            fit_s = time.perf_counter() - tf
            self.fit_seconds[name] = fit_s
            complete = _concrete_params(model, self.data.train)
            scorer = model.score
        te = time.perf_counter()
        trial.set_user_attr("model", name)
        trial.set_user_attr("params", complete)
        metrics = score_users(scorer, self.data, self.ks, self.tc.objective, report)
        self.eval_seconds_per_user[name] = (time.perf_counter() - te) / max(1, len(self.data.users))
        seconds = time.perf_counter() - t0
        self.trial_seconds.setdefault(name, []).append(seconds)
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("fit_seconds", fit_s)
        trial.set_user_attr("metrics", metrics)
        return objective_of(metrics, self.tc.objective)


def _concrete_params(model: Any, train: sp.csr_matrix) -> dict[str, Any]:
    """The model's params with data-adaptive sizes written out (best.yaml must not depend on them)."""
    from recsys.models.adaptive import DataShape, adaptive_factors

    params: dict[str, Any] = dict(model.params.model_dump())
    if "factors" in params and params["factors"] is None:
        params["factors"] = adaptive_factors(model.name, DataShape.of(train))
    return params


def setup_fingerprint(cfg: TrainConfig, data_fp: str) -> str:
    """What a resumed study must share with the one on disk: the config (minus budget/trial counts)
    and the data."""
    dump = cfg.model_dump(mode="json")
    tune = dict(dump.get("tune") or {})
    for key in ("trials", "budget_seconds"):
        tune.pop(key, None)
    dump["tune"] = tune
    text = json.dumps({"config": dump, "data": data_fp}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _start_points(tuner: Tuner) -> list[dict[str, Any]]:
    from recsys.models.adaptive import DataShape, adaptive_factors
    from recsys.models.registry import tune_starts

    points = []
    shape = DataShape.of(tuner.data.train)
    for name, space in tuner.spaces.items():
        for start in tune_starts(name):
            if "factors" in space and start.get("factors") is None and name in ("graphfilter", "als", "bpr"):
                start["factors"] = adaptive_factors(name, shape)
            if name == "graphfilter" and tuner.sweep is not None and "factors" in start:
                start["factors"] = min(int(start["factors"]), tuner.sweep.max_factors)
            point = {f"{name}.{p}": _clip(space[p], v) for p, v in start.items() if p in space}
            if len(tuner.spaces) > 1:
                point["model"] = name
            points.append(point)
    return points


def run_tune(
    cfg: TrainConfig,
    out_dir: Path,
    trials: int | None = None,
    timeout: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    started: float | None = None,
) -> TuneResult:
    """Tune ``cfg`` into ``out_dir`` (resuming a study already there) and write best.yaml, the trials
    table and plot. ``trials`` caps the study's finished trials, ``timeout`` the wall time (both
    default to the config's ``tune`` section)."""
    import optuna

    from training.data import data_fingerprint

    started = time.monotonic() if started is None else started
    say = log or (lambda _msg: None)
    tc = cfg.tune or TuneConfig()
    n_trials = trials if trials is not None else tc.trials
    budget = timeout if timeout is not None else tc.budget_seconds
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = setup_fingerprint(cfg, data_fingerprint(Path(cfg.data.path), cfg.data.events_log))
    (out_dir / "tuned.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(
            seed=cfg.seed + len(_finished_numbers(storage)), multivariate=True, group=True, n_startup_trials=8
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=6, n_warmup_steps=0),
    )
    old = study.user_attrs.get("setup")
    if old is not None and old != fingerprint:
        raise TuneError(
            f"{out_dir / STUDY_FILE} holds a study of another config or data; use a new --out directory"
        )
    resumed = len(study.trials) > 0
    for t in study.trials:  # a trial left RUNNING was interrupted with its process
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    study.set_user_attr("setup", fingerprint)

    say("loading data and carving the validation split from the training data")
    tuner = Tuner(cfg, out_dir, budget, started)
    say(
        f"validation: {tuner.data.valid.nnz} held-out pairs "
        f"({'latest per user' if tuner.data.chronological else 'seeded random per user'}), "
        f"{len(tuner.data.users)} users scored per trial"
        + (f", graph filter SVD rank {tuner.sweep.svd_rank} cached" if tuner.sweep is not None else "")
    )
    if not resumed:
        for point in _start_points(tuner):
            study.enqueue_trial(point, skip_if_exists=True)

    def best_model() -> str:
        try:
            return str(study.best_trial.user_attrs.get("model", next(iter(tuner.spaces))))
        except ValueError:
            return next(iter(tuner.spaces))

    def best_estimate() -> float:
        try:
            best = study.best_trial
        except ValueError:
            return tuner.final_estimate(best_model())
        return tuner.final_estimate(str(best.user_attrs["model"]), best.user_attrs["params"])

    stop_reason = "trials"
    refused = 0
    done = len(_finished_numbers(storage))
    bar = _progress_bar(max(0, n_trials - done), progress)
    try:
        while done < n_trials:
            any_complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            if any_complete and budget - tuner.elapsed() - best_estimate() <= 0:
                stop_reason = "budget"
                break
            trial = study.ask()
            try:
                value = tuner.run_trial(trial, lambda _name: best_estimate(), must_finish=not any_complete)
            except _OutOfBudget:
                # this setting's final train would not fit; cheaper settings may still
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                refused += 1
                if refused >= MAX_REFUSED:
                    stop_reason = "budget"
                    break
                continue
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
            refused = 0
            done += 1
            bar.update(1)
            if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                bar.set_postfix(best=f"{study.best_value:.4f}", model=best_model())
                if stalled(study, tc.patience):
                    stop_reason = "patience"
                    break
    finally:
        bar.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise TuneError("no trial finished; see the failed trials in trials.csv")
    best = study.best_trial
    summary = _summary(study, tuner, stop_reason, budget)
    np.save(out_dir / USERS_FILE, tuner.data.users.astype(np.int64), allow_pickle=False)
    best_yaml = write_best_yaml(cfg, best, out_dir)
    from training.tune_report import write_trials

    write_trials(study, out_dir)
    (out_dir / "tune.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return TuneResult(
        out_dir=out_dir,
        best_yaml=best_yaml,
        best_value=float(best.value or 0.0),
        best_model=str(best.user_attrs["model"]),
        best_params=dict(best.user_attrs["params"]),
        n_trials=len(study.trials),
        summary=summary,
    )


def stalled(study: Any, patience: int) -> bool:
    """True when the last ``patience`` finished trials did not improve the best by 1e-4 or more."""
    import optuna

    finished = [
        t
        for t in study.trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    if len(finished) <= patience:
        return False
    values = [t.value for t in finished[:-patience] if t.value is not None]
    before = max(values) if values else float("-inf")
    return float(study.best_value) < before + 1e-4


def _finished_numbers(storage: str) -> list[int]:
    import optuna

    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:
        return []
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t.number for t in study.trials if t.state in finished]


def _progress_bar(total: int, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="tune", unit="trial", disable=not (progress and sys.stderr.isatty()))


def _summary(study: Any, tuner: Tuner, stop_reason: str, budget: float) -> dict[str, Any]:
    import optuna

    best = study.best_trial
    states = [t.state for t in study.trials]
    model = str(best.user_attrs["model"])
    return {
        "best": {
            "trial": best.number,
            "value": best.value,
            "model": model,
            "params": best.user_attrs["params"],
            "metrics": best.user_attrs.get("metrics", {}),
        },
        "objective": "mean of " + " and ".join(tuner.tc.objective) + " on the validation split",
        "trials": {
            "total": len(states),
            "complete": states.count(optuna.trial.TrialState.COMPLETE),
            "pruned": states.count(optuna.trial.TrialState.PRUNED),
            "failed": states.count(optuna.trial.TrialState.FAIL),
        },
        "stopped_by": stop_reason,
        "tune_seconds": tuner.elapsed(),
        "budget_seconds": budget,
        "final_train_estimate_seconds": tuner.final_estimate(model, best.user_attrs["params"]),
        "validation": {
            "held_out_pairs": int(tuner.data.valid.nnz),
            "scored_users": len(tuner.data.users),
            "split": "latest per user" if tuner.data.chronological else "seeded random per user",
            "fraction": tuner.tc.validation_fraction,
        },
        "graphfilter_svd_rank": tuner.sweep.svd_rank if tuner.sweep is not None else None,
        "load_seconds": tuner.load_seconds,
    }


def best_config(cfg: TrainConfig, best: Any) -> dict[str, Any]:
    """The complete train config of the best trial: the tuned config without its tune section."""
    raw = cfg.model_dump(mode="json")
    raw.pop("tune", None)
    raw["model"] = {"name": best.user_attrs["model"], "params": best.user_attrs["params"]}
    return raw


def write_best_yaml(cfg: TrainConfig, best: Any, out_dir: Path) -> Path:
    raw = best_config(cfg, best)
    header = (
        f"# Written by `kolfeed tune` (trial {best.number}, validation objective {best.value:.5f}).\n"
        "# A complete train config: `kolfeed train` fits it on all training data and evaluates on test.\n"
    )
    path = out_dir / "best.yaml"
    tmp = out_dir / ".best.yaml.tmp"
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    tmp.replace(path)
    return path


def reproduce_best(best_yaml: Path, tune_dir: Path) -> float:
    """Refit best.yaml's model on the validation split and score it as the tune did (a check)."""
    from training.config import load_config
    from training.run import create_model

    cfg = load_config(best_yaml)
    tuned = load_config(Path(tune_dir) / "tuned.yaml")
    data, _ = validation_data(tuned)
    data.users = np.load(Path(tune_dir) / USERS_FILE, allow_pickle=False)
    model = create_model(cfg)
    model.fit(data.train)
    tc = tuned.tune or TuneConfig()
    ks = tuple(sorted({int(x.split("@")[1]) for x in tc.objective} | set(tuned.eval.ks)))
    return objective_of(score_users(model.score, data, ks, tc.objective), tc.objective)


def tune_from_file(
    config: Path,
    overrides: list[str],
    out_dir: Path,
    trials: int | None,
    timeout: float | None,
    progress: bool,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """The command's library entry: load the config, keep a copy of it in DIR, run the tune."""
    from training.config import load_config

    started = time.monotonic()
    cfg = load_config(config, overrides)
    if not math.isfinite(timeout or 0.0):
        raise ConfigError("--timeout must be a finite number of seconds")
    return run_tune(cfg, out_dir, trials, timeout, progress, log, started)

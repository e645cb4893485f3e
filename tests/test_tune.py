"""`kolfeed tune`: spaces, data-adaptive sizes, the validation split, the cached graph-filter sweep, and
the acceptance checks (no leakage, resume, best.yaml reproduces its score, every space is valid)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from recsys.models import registry
from recsys.models.adaptive import DataShape, adaptive_factors
from recsys.models.space import Choice, FloatRange, IntRange, SpaceError, check_space, parse_space
from recsys.validation import holdout_split
from tests.world_fixtures import make_tiny_world
from training.config import ConfigError, load_config

AUTO = Path(__file__).resolve().parent.parent / "configs" / "train" / "auto.yaml"


def _clustered_lightgcn(directory: Path, seed: int = 0, n_users: int = 90, n_items: int = 60) -> Path:
    """Users in three taste clusters, each liking one third of the items (plus a little noise)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_lines, test_lines = [], []
    third = n_items // 3
    for u in range(n_users):
        group = u % 3
        liked = rng.choice(np.arange(group * third, (group + 1) * third), size=9, replace=False)
        noise = rng.choice(n_items, size=2, replace=False)
        items = list(dict.fromkeys([*liked.tolist(), *noise.tolist()]))
        train_lines.append(" ".join(map(str, [u, *items[:-2]])))
        test_lines.append(" ".join(map(str, [u, *items[-2:]])))
    (directory / "train.txt").write_text("\n".join(train_lines) + "\n")
    (directory / "test.txt").write_text("\n".join(test_lines) + "\n")
    return directory


def _tune_config(data: Path, models: str = "[graphfilter]", extra: list[str] | None = None) -> list[str]:
    return [
        f"data.path={data}",
        "data.format=lightgcn",
        f"tune.models={models}",
        "tune.max_users=60",
        "tune.spaces.graphfilter.factors={low: 4, high: 24, log: true}",
        *(extra or []),
    ]


def _tune(data: Path, out: Path, trials: int, models: str = "[graphfilter]", extra: list[str] | None = None):
    from training.tune import run_tune

    cfg = load_config(AUTO, _tune_config(data, models, extra))
    return run_tune(cfg, out, trials=trials, timeout=3600)


# ---------------------------------------------------------------- spaces and adaptive sizes


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_shipped_space_holds_valid_params(name: str) -> None:
    space = registry.search_space(name)
    check_space(name, registry.params_class(name), space)
    rng = np.random.default_rng(0)
    for _ in range(20):  # random interior points build a model too
        point = {}
        for key, dim in space.items():
            if isinstance(dim, Choice):
                point[key] = dim.values[int(rng.integers(len(dim.values)))]
            elif isinstance(dim, IntRange):
                point[key] = int(rng.integers(dim.low, dim.high + 1))
            else:
                point[key] = float(rng.uniform(dim.low, dim.high))
        registry.create(name, point)
    for start in registry.tune_starts(name):
        registry.create(name, start)


def test_a_space_naming_an_unknown_parameter_is_rejected_by_name() -> None:
    with pytest.raises(SpaceError, match="factorz"):
        check_space("als", registry.params_class("als"), {"factorz": IntRange(1, 4)})


def test_a_config_space_parses_ranges_logs_and_choices() -> None:
    space = parse_space(
        {
            "factors": {"low": 8, "high": 64, "log": True},
            "alpha": [0.5, 2.0],
            "iterations": {"choices": [5, 10]},
        },
        "tune.spaces.als",
    )
    assert space == {
        "factors": IntRange(8, 64, True),
        "alpha": FloatRange(0.5, 2.0, False),
        "iterations": Choice((5, 10)),
    }
    with pytest.raises(SpaceError, match=r"tune\.spaces\.als\.alpha"):
        parse_space({"alpha": {"low": 1}}, "tune.spaces.als")


def test_adaptive_factors_grow_with_the_square_root_of_the_smaller_side() -> None:
    assert adaptive_factors("graphfilter", DataShape(29_858, 40_981, 810_128)) == 432
    assert adaptive_factors("graphfilter", DataShape(943, 1_682, 80_000)) == 80
    assert adaptive_factors("als", DataShape(29_858, 40_981, 810_128)) == 256
    assert adaptive_factors("graphfilter", DataShape(10**7, 10**7, 10**8)) == 1024  # capped
    assert adaptive_factors("graphfilter", DataShape(5, 50, 30)) == 4  # never the full rank


def test_a_model_without_factors_picks_them_from_the_data() -> None:
    train = sp.random(120, 200, density=0.05, format="csr", random_state=1, dtype=np.float32)
    model = registry.create("graphfilter", {})
    model.fit(train)
    assert model.describe()["factors_used"] == adaptive_factors("graphfilter", DataShape.of(train))


# ---------------------------------------------------------------- validation split


def test_holdout_keeps_each_users_latest_items_when_there_are_timestamps() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=np.float32))
    times = train.copy().astype(np.float64)
    times.data = np.array([5, 1, 4, 2, 3, 1, 2, 7], dtype=np.float64)
    split = holdout_split(train, fraction=0.4, seed=0, train_time=times)
    assert split.chronological
    assert split.valid[0].indices.tolist() == [0, 2]  # the two latest of five (t=5, 4)
    assert split.valid[1].indices.tolist() == [2]  # one of two (t=2)
    assert split.valid[2].nnz == 0  # a single item stays in training
    assert (split.train.multiply(split.valid)).nnz == 0
    assert split.train.nnz + split.valid.nnz == train.nnz


def test_random_holdout_is_seeded_and_per_user() -> None:
    train = sp.random(50, 40, density=0.3, format="csr", random_state=3, dtype=np.float32)
    a = holdout_split(train, fraction=0.25, seed=7)
    b = holdout_split(train, fraction=0.25, seed=7)
    c = holdout_split(train, fraction=0.25, seed=8)
    assert (a.valid != b.valid).nnz == 0
    assert (a.valid != c.valid).nnz > 0
    n = np.diff(sp.csr_matrix(train).indptr)
    held = np.diff(a.valid.indptr)
    assert np.array_equal(held, np.where(n >= 2, np.maximum(1, np.floor(n * 0.25)), 0))


def test_recbole_loading_keeps_the_timestamps_of_training_pairs(tmp_path: Path) -> None:
    from recsys.datasets import load_dataset

    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"u{u}\ti{i}\t4\t{100 * u + i}" for u in range(3) for i in range(5)]
    (tmp_path / "x.inter").write_text("\n".join(rows) + "\n")
    inter = load_dataset(tmp_path / "x.inter", "recbole", {})
    assert inter.train_time is not None
    assert inter.train_time.nnz == inter.train.nnz
    assert float(inter.train_time[0].max()) == 3.0  # u0's items 0..3 train, item 4 test


# ---------------------------------------------------------------- cached graph-filter sweep


def test_the_sweep_scores_exactly_like_a_refitted_graph_filter() -> None:
    from recsys.models.graphfilter import GraphFilter
    from recsys.models.graphfilter_sweep import FilterSweep

    train = sp.random(80, 120, density=0.08, format="csr", random_state=5, dtype=np.float32)
    train.data[:] = 1.0
    users = np.array([0, 3, 10, 41, 79])
    sweep = FilterSweep(train, users, max_factors=30)
    for params in (
        {"factors": 30, "ideal_weight": 0.3, "blur_time": 1.0, "sharpen_time": 0.0},
        {"factors": 7, "ideal_weight": 1.5, "blur_time": 0.4, "sharpen_time": 2.0},
        {"factors": 12, "ideal_weight": 0.05, "blur_time": 0.0, "sharpen_time": 0.7},
    ):
        model = GraphFilter(sweep.model_params(params))
        model.fit(train)
        np.testing.assert_allclose(sweep.score(params), model.score(users), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the tune


def test_poisoning_the_test_split_leaves_the_tunes_choice_unchanged(tmp_path: Path) -> None:
    clean = _clustered_lightgcn(tmp_path / "clean")
    poisoned = _clustered_lightgcn(tmp_path / "poisoned")
    rng = np.random.default_rng(99)
    lines = [f"{u} {' '.join(map(str, rng.choice(60, size=5, replace=False)))}" for u in range(90)]
    (poisoned / "test.txt").write_text("\n".join(lines) + "\n")
    assert (clean / "test.txt").read_text() != (poisoned / "test.txt").read_text()
    a = _tune(clean, tmp_path / "tune_clean", trials=8)
    b = _tune(poisoned, tmp_path / "tune_poisoned", trials=8)
    assert a.best_params == b.best_params
    assert a.best_value == b.best_value
    rows_a = (tmp_path / "tune_clean" / "trials.csv").read_text().splitlines()
    rows_b = (tmp_path / "tune_poisoned" / "trials.csv").read_text().splitlines()
    strip = [",".join(r.split(",")[:4]) for r in rows_a], [",".join(r.split(",")[:4]) for r in rows_b]
    assert strip[0] == strip[1]  # every trial's value, not only the winner


def test_an_interrupted_tune_resumes_from_its_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.tune as tune

    data = _clustered_lightgcn(tmp_path / "data")
    out = tmp_path / "tune"
    real = tune.score_users
    calls = {"n": 0}

    def interrupt_on_fourth(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tune, "score_users", interrupt_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        _tune(data, out, trials=7)
    monkeypatch.setattr(tune, "score_users", real)
    import optuna

    before = optuna.load_study(study_name=tune.STUDY_NAME, storage=f"sqlite:///{out / tune.STUDY_FILE}")
    kept = {t.number: t.value for t in before.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(kept) == 3
    result = _tune(data, out, trials=7)
    after = optuna.load_study(study_name=tune.STUDY_NAME, storage=f"sqlite:///{out / tune.STUDY_FILE}")
    states = [t.state for t in after.trials]
    finished = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 7
    assert states[3] == optuna.trial.TrialState.FAIL  # the interrupted one, closed on resume
    assert {t.number: t.value for t in after.trials if t.number in kept} == kept
    assert result.best_yaml.is_file()


def test_resuming_with_another_config_is_refused(tmp_path: Path) -> None:
    from training.tune import TuneError

    data = _clustered_lightgcn(tmp_path / "data")
    _tune(data, tmp_path / "tune", trials=2)
    with pytest.raises(TuneError, match="another config"):
        _tune(data, tmp_path / "tune", trials=3, extra=["tune.validation_fraction=0.3"])


@pytest.mark.parametrize("models", ["[graphfilter]", "[graphfilter, als]"])
def test_best_yaml_reproduces_the_best_trials_validation_score(tmp_path: Path, models: str) -> None:
    from training.tune import reproduce_best

    data = _clustered_lightgcn(tmp_path / "data")
    out = tmp_path / "tune"
    extra = ["tune.spaces.als.factors=[4, 16]", "tune.spaces.als.iterations={choices: [3]}"]
    result = _tune(data, out, trials=10, models=models, extra=extra if "als" in models else [])
    assert reproduce_best(result.best_yaml, out) == pytest.approx(result.best_value, abs=1e-6)


def test_best_yaml_is_a_complete_train_config_that_trains_and_evaluates_on_test(tmp_path: Path) -> None:
    from training.run import train

    data = _clustered_lightgcn(tmp_path / "data")
    result = _tune(data, tmp_path / "tune", trials=6)
    raw = yaml.safe_load(result.best_yaml.read_text())
    assert "tune" not in raw
    assert raw["model"]["params"]["factors"] == result.best_params["factors"]
    assert set(raw["model"]["params"]) == set(registry.params_class(raw["model"]["name"]).model_fields)
    run = train(load_config(result.best_yaml), tmp_path / "runs", quiet=True)
    assert 0.0 < run.metrics["recall@20"] <= 1.0
    for name in ("trials.csv", "trials.png", "tune.json", "importance.json", "study.db"):
        assert (tmp_path / "tune" / name).is_file()
    summary = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 6
    assert summary["validation"]["split"] == "seeded random per user"


def test_the_first_trials_are_the_known_baselines(tmp_path: Path) -> None:
    data = _clustered_lightgcn(tmp_path / "data")
    _tune(data, tmp_path / "tune", trials=4)
    rows = (tmp_path / "tune" / "trials.csv").read_text().splitlines()[1:]
    first = json.loads(rows[0].split(",", 5)[5].strip('"').replace('""', '"'))
    assert first["graphfilter.blur_time"] == 1.0 and first["graphfilter.sharpen_time"] == 0.0  # GF-CF


def test_a_budget_too_small_still_finishes_one_trial_and_says_it_stopped_on_budget(tmp_path: Path) -> None:
    from training.tune import run_tune

    data = _clustered_lightgcn(tmp_path / "data")
    cfg = load_config(AUTO, _tune_config(data))
    result = run_tune(cfg, tmp_path / "tune", trials=50, timeout=1.0)
    assert result.summary["stopped_by"] == "budget"
    assert result.summary["trials"]["complete"] == 1
    assert result.best_yaml.is_file()


def test_an_unknown_tune_key_is_rejected_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"tune\.trails"):
        load_config(AUTO, ["tune.trails=3"])
    with pytest.raises(ConfigError, match=r"tune\.models"):
        from training.tune import resolve_spaces

        cfg = load_config(AUTO, ["tune.models=[nope]"])
        resolve_spaces(cfg.tune)  # type: ignore[arg-type]


def test_kolfeed_models_lists_every_search_space() -> None:
    from typer.testing import CliRunner

    from kolfeed.cli import _register, app

    _register()
    out = CliRunner().invoke(app, ["models"])
    assert out.exit_code == 0, out.output
    for name in registry.MODELS:
        assert name in out.output
    assert "ideal_weight: float [0.02, 3] log" in out.output
    assert "data-adaptive" in out.output


def test_pair_times_keep_each_pairs_latest_event_and_the_earliest_for_untimed_pairs() -> None:
    from recsys.validation import pair_times

    pattern = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32))
    times = pair_times(
        pattern, np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), np.array([5.0, 9.0, 3.0, 1.0])
    )
    assert times.toarray().tolist() == [[9.0, 0.0, 1.0], [0.0, 3.0, 1.0]]


def test_a_world_validates_chronologically(tmp_path: Path) -> None:
    from training.tune import validation_data

    make_tiny_world(tmp_path / "w", 2)
    cfg = load_config(AUTO, [f"data.path={tmp_path / 'w'}", "data.format=world", "eval.per_behaviour=false"])
    data, _ = validation_data(cfg)
    assert data.chronological
    assert data.valid.nnz > 0


def test_a_converged_search_stops_on_patience(tmp_path: Path) -> None:
    data = _clustered_lightgcn(tmp_path / "data")
    result = _tune(data, tmp_path / "tune", trials=60, extra=["tune.patience=3"])
    assert result.summary["stopped_by"] == "patience"
    assert result.n_trials < 60


def test_bench_tune_datasets_are_named_paths_with_a_format(tmp_path: Path) -> None:
    from kolfeed.bench.tune import BenchTuneError, Dataset

    ds = Dataset.parse(f"small={tmp_path}:lightgcn")
    assert (ds.name, ds.path, ds.format) == ("small", tmp_path, "lightgcn")
    with pytest.raises(BenchTuneError, match="NAME=PATH:FORMAT"):
        Dataset.parse(str(tmp_path))
    with pytest.raises(BenchTuneError, match="does not exist"):
        Dataset.parse(f"x={tmp_path / 'missing'}:lightgcn")

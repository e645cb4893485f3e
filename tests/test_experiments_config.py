"""Experiment YAML: shipped configs load and name existing ranking variants; bad files name the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.experiments.assignment import active
from recsys.experiments.config import (
    ExperimentConfigError,
    experiment_from_dict,
    find_experiment,
    load_experiment,
    load_experiments,
    missing_variants,
)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments"
RANKING = ROOT / "configs" / "ranking"


def _raw(**over: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "t",
        "salt": "t1",
        "arms": [
            {"name": "a", "variant": "default", "share": 0.5},
            {"name": "b", "variant": "no_kol", "share": 0.5},
        ],
    }
    raw.update(over)
    return raw


def test_shipped_experiments_load_and_reference_existing_variants() -> None:
    exps = load_experiments(EXPERIMENTS)
    assert {"kol_weight", "feed_mix"} <= set(exps)
    kw = exps["kol_weight"]
    assert kw.control_arm == "control"
    assert [a.variant for a in kw.arms] == ["default", "kol_heavy"]
    assert [a.share for a in kw.arms] == [0.5, 0.5]
    assert len(exps["feed_mix"].arms) == 3
    for exp in exps.values():
        assert missing_variants(exp, RANKING) == [], f"{exp.name} names a ranking variant that does not exist"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("name: x\nsalt: s\ntraffic: 1\narms:\n  - {name: a, variant: default, share: 1.0}\n")
    with pytest.raises(ExperimentConfigError, match=r"x.yaml: unknown key 'traffic'"):
        load_experiment(p)
    p.write_text("name: x\nsalt: s\narms:\n  - {name: a, variant: default, share: 1.0, weight: 2}\n")
    with pytest.raises(ExperimentConfigError, match=r"unknown key 'arms.0.weight'"):
        load_experiment(p)


def test_shares_must_sum_to_one() -> None:
    arms = [
        {"name": "a", "variant": "default", "share": 0.5},
        {"name": "b", "variant": "no_kol", "share": 0.4},
    ]
    with pytest.raises(ExperimentConfigError, match=r"shares must sum to 1, got a=0.5 \+ b=0.4 = 0.9"):
        experiment_from_dict(_raw(arms=arms))
    # thirds written with rounding are fine within the tolerance only if they sum to 1
    thirds = [
        {"name": n, "variant": "default", "share": s}
        for n, s in (("a", 0.3333), ("b", 0.3333), ("c", 0.3334))
    ]
    assert len(experiment_from_dict(_raw(arms=thirds)).arms) == 3


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"control": "zzz"}, r"control: 'zzz' is not an arm"),
        (
            {
                "arms": [
                    {"name": "a", "variant": "default", "share": 0.5},
                    {"name": "a", "variant": "x", "share": 0.5},
                ]
            },
            r"duplicate arm name\(s\) a",
        ),
        ({"start": "2024-02-01T00:00:00Z", "stop": "2024-01-01T00:00:00Z"}, r"stop .* must be after start"),
        ({"arms": [{"name": "a", "variant": "../etc", "share": 1.0}]}, r"arms.0.variant: .*variant must be"),
        ({"arms": [{"name": "a", "variant": "default", "share": 0.0}]}, r"arms.0.share"),
        ({"arms": []}, r"arms"),
    ],
)
def test_invalid_experiments_name_the_problem(over: dict[str, object], pattern: str) -> None:
    with pytest.raises(ExperimentConfigError, match=pattern):
        experiment_from_dict(_raw(**over), source="exp.yaml")


def test_find_experiment_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match="no experiment named 'nope'"):
        find_experiment("nope", EXPERIMENTS)
    with pytest.raises(ExperimentConfigError, match="experiment directory not found"):
        load_experiments(tmp_path / "missing")
    with pytest.raises(ExperimentConfigError, match="experiment file not found"):
        load_experiment(tmp_path / "missing.yaml")


def test_default_control_is_first_arm_and_window_is_utc() -> None:
    exp = experiment_from_dict(_raw(start="2024-01-01T00:00:00", stop="2024-01-08T00:00:00"))
    assert exp.control_arm == "a"
    assert exp.start_ts == 1_704_067_200
    assert exp.stop_ts == 1_704_067_200 + 7 * 86_400
    assert not active(exp, datetime(2023, 12, 31, 23, 59, tzinfo=UTC))
    assert active(exp, datetime(2024, 1, 1, tzinfo=UTC))
    assert active(exp, 1_704_067_200 + 86_400)
    assert not active(exp, exp.stop_ts)
    assert active(experiment_from_dict(_raw()))  # no window: always on

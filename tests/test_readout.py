"""Experiment readout: known answers on a hand-made log, A/A calibration, power, and the SRM alarm."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from recsys.experiments.assignment import arm_index_many, assign
from recsys.experiments.config import ExperimentConfig, experiment_from_dict
from recsys.experiments.readout import METRICS, UserMetrics, experiment_report, readout_from_users, srm_check
from recsys.schema import EVENTS

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z


def _exp(salt: str = "readout", shares: tuple[float, float] = (0.5, 0.5), **over: object) -> ExperimentConfig:
    arms = [
        {"name": "control", "variant": "default", "share": shares[0]},
        {"name": "treat", "variant": "kol_heavy", "share": shares[1]},
    ]
    return experiment_from_dict({"name": "t", "salt": salt, "control": "control", "arms": arms, **over})


def _users_in(exp: ExperimentConfig, arm: str, k: int) -> list[int]:
    out = [u for u in range(1000) if assign(u, exp) == arm][:k]
    assert len(out) == k
    return out


def _events(rows: list[tuple[int, int, int, str, float | None]]) -> pa.Table:
    """(ts, user, item, action, value) rows with the other columns null."""
    cols: dict[str, list[object]] = {c: [] for c in EVENTS.column_names}
    for ts, user, item, action, value in rows:
        for c, v in zip(
            ("ts", "user_id", "item_id", "action", "value"), (ts, user, item, action, value), strict=True
        ):
            cols[c].append(v)
        for c in ("post_id", "kol_id", "to_user_id", "request_id"):
            cols[c].append(None)
    return pa.table(cols, schema=EVENTS.arrow_schema())


def test_known_answers_on_a_tiny_log() -> None:
    exp = _exp(start="2024-01-01T00:00:00Z", stop="2024-01-02T00:00:00Z")
    c1, c2 = _users_in(exp, "control", 2)
    (t1,) = _users_in(exp, "treat", 1)
    (ghost,) = _users_in(exp, "treat", 2)[1:]
    ev: list[tuple[int, int, int, str, float | None]] = [(T0 + 10, c1, 1, "impression", None)] * 4
    ev += [(T0 + 11, c1, 1, "click", None)]
    ev += [(T0 + 20, c2, 2, "impression", None)] * 2
    ev += [(T0 + 21, c2, 2, "click", None), (T0 + 22, c2, 2, "share", None), (T0 + 23, c2, 2, "buy", 10.0)]
    ev += [(T0 + 30, t1, 3, "impression", None)] * 3
    ev += [(T0 - 5, t1, 3, "click", None)]  # before start: ignored
    ev += [(T0 + 86_400, t1, 3, "buy", 99.0)]  # at stop: ignored (window is [start, stop))
    ev += [(T0 + 40, ghost, 4, "buy", 7.0)]  # no impression: outside the population
    rep = experiment_report(_events(ev), exp)

    assert rep.events_outside_window == 2
    assert rep.events_outside_population == 1
    assert rep.events_in_window == len(ev) - 2
    c, t = rep.arm("control"), rep.arm("treat")
    assert (c.users, c.impressions, c.clicks, c.shares, c.buys, c.buyers) == (2, 6, 2, 1, 1, 1)
    assert (t.users, t.impressions, t.clicks, t.buys) == (1, 3, 0, 0)
    assert c.ctr.value == pytest.approx(2 / 6)
    assert c.share_rate.value == pytest.approx(1 / 6)
    assert c.buy_conversion.value == pytest.approx(0.5)
    assert c.gmv == pytest.approx(10.0)
    assert c.gmv_per_user.value == pytest.approx(5.0)
    assert c.buys_per_click == pytest.approx(0.5)
    assert t.ctr.value == 0.0 and t.buys_per_click is None
    # delta method by hand: clicks (1, 1), impressions (4, 2): r = 1/3, var(Y)=0, var(X)=2, cov=0
    var = (0 - 0 + (1 / 3) ** 2 * 2) / (3.0**2 * 2)
    assert c.ctr.ci_high == pytest.approx(1 / 3 + 1.959963984540054 * math.sqrt(var))
    cmp = t.vs_control["ctr"]
    assert cmp.lift == pytest.approx(-1.0) and cmp.control == pytest.approx(1 / 3)
    assert c.vs_control == {} and c.is_control
    assert rep.model_dump_json()  # serialises (NaN-free)


def _synthetic(
    rng: np.random.Generator, exp: ExperimentConfig, n: int, click_mult: float = 1.0
) -> UserMetrics:
    """Heterogeneous users: per-user click propensity, so impressions within a user are correlated."""
    ids = np.arange(n, dtype=np.int64)
    arm = arm_index_many(ids, exp)
    imps = 1 + rng.poisson(8, n)
    p = rng.beta(2, 18, n)
    p = np.where(arm == 1, np.clip(p * click_mult, 0, 1), p)
    clicks = rng.binomial(imps, p)
    shares = rng.binomial(clicks, 0.15)
    buys = rng.binomial(clicks, 0.1)
    gmv = buys * rng.lognormal(3.0, 1.0, n)
    f = np.float64
    return UserMetrics(ids, arm, imps.astype(f), clicks.astype(f), shares.astype(f), buys.astype(f), gmv)


def aa_false_positive_rates(seeds: int = 200, n: int = 2000) -> dict[str, float]:
    hits = dict.fromkeys(METRICS, 0)
    for seed in range(seeds):
        exp = _exp(salt=f"aa-{seed}")
        rep = readout_from_users(exp, _synthetic(np.random.default_rng(seed), exp, n))
        for metric, cmp in rep.arm("treat").vs_control.items():
            hits[metric] += int(cmp.significant)
    return {m: h / seeds for m, h in hits.items()}


def test_aa_false_positive_rate_is_near_nominal() -> None:
    rates = aa_false_positive_rates()
    print("A/A false-positive rate per metric (200 seeds, alpha=0.05):", rates)
    for metric, rate in rates.items():
        assert 0.01 <= rate <= 0.10, (metric, rate)


def test_truly_better_arm_is_detected() -> None:
    exp = _exp(salt="power")
    rep = readout_from_users(exp, _synthetic(np.random.default_rng(7), exp, 6000, click_mult=1.3))
    ctr = rep.arm("treat").vs_control["ctr"]
    assert ctr.p_value is not None and ctr.p_value < 0.05
    assert ctr.lift is not None and 0.15 < ctr.lift < 0.45
    assert ctr.lift_ci_low is not None and ctr.lift_ci_low > 0
    assert not rep.srm_warning


def test_srm_flagged_when_an_arm_loses_ten_percent_of_users() -> None:
    exp = _exp(salt="srm")
    users = _synthetic(np.random.default_rng(3), exp, 20_000)
    treat = np.flatnonzero(users.arm == 1)
    drop = np.zeros(len(users.user_id), dtype=bool)
    drop[treat[: len(treat) // 10]] = True  # logging lost 10% of the treatment users
    rep = readout_from_users(exp, users.select(~drop))
    assert rep.srm_warning and rep.srm.warning
    assert rep.srm.p_value is not None and rep.srm.p_value < 0.001
    assert "SAMPLE RATIO MISMATCH" in rep.srm.message and rep.notes[0] == rep.srm.message
    assert not readout_from_users(exp, users).srm_warning


def test_srm_check_known_values() -> None:
    exp = _exp(shares=(0.5, 0.5))
    ok = srm_check(exp, np.array([5000, 5000]))
    assert ok.chi2 == 0.0 and ok.p_value == pytest.approx(1.0) and not ok.warning
    bad = srm_check(exp, np.array([5000, 4500]))
    assert bad.chi2 == pytest.approx(2 * 250**2 / 4750)
    assert bad.warning
    assert srm_check(exp, np.array([0, 0])).message.startswith("SRM not checked")


def test_bootstrap_gmv_interval_is_seeded_and_close_to_t() -> None:
    exp = _exp(salt="boot")
    users = _synthetic(np.random.default_rng(11), exp, 3000)
    a = readout_from_users(exp, users, bootstrap_resamples=999, seed=5).arm("control").gmv_per_user
    b = readout_from_users(exp, users, bootstrap_resamples=999, seed=5).arm("control").gmv_per_user
    t = readout_from_users(exp, users).arm("control").gmv_per_user
    assert a == b
    assert a.ci_low is not None and t.ci_low is not None and a.value is not None
    assert a.ci_low < a.value < (a.ci_high or 0)
    assert abs(a.ci_low - t.ci_low) < 0.2 * (a.value - t.ci_low)

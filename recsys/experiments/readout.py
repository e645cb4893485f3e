"""Per-arm experiment readout: metrics with 95% CIs, lift vs control with p-values, and an SRM check.

Why user-level statistics: the randomisation unit is the user, and one user's impressions are not
independent (a keen user clicks a lot on every page). Treating impressions as independent trials makes
CIs too narrow and an A/A test "significant" far more often than 5%. So every metric is computed from
per-user aggregates:

======================  ==========================================  ====================================
metric                  definition                                  interval / test
======================  ==========================================  ====================================
``ctr``                 Σclicks / Σimpressions over the arm's users delta method for a ratio of per-user
``share_rate``          Σshares / Σimpressions                      means (Deng et al. 2018); z-test
``buy_conversion``      buyers / users (share of users with a buy)  Wilson CI (scipy binomtest); Welch t
``gmv_per_user``        mean per-user GMV, non-buyers count as 0     t interval (or bootstrap); Welch t
======================  ==========================================  ====================================

``buys_per_click`` (Σbuys / Σclicks) is reported as a descriptive number without a test.

Population: users assigned to the arm (by the deterministic hash — no arm column is needed in the
log) with at least one impression in ``[start, stop)``. Their clicks/shares/buys in the window count;
events of users without an impression (e.g. a friend who only received a share) are left out and
counted in ``events_outside_population``.

Lift is ``treatment / control - 1``; its CI is the delta-method normal interval; the p-value tests the
absolute difference (the two agree to first order). No correction is made for testing several
metrics or arms; ``alpha`` is per comparison.

SRM: ``scipy.stats.chisquare`` of users per arm against the configured shares; ``p < srm_alpha``
(default 0.001) sets ``srm_warning`` — the split is broken and no other number should be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy import stats

from recsys.event_columns import BUY, CLICK, IMPRESSION, SHARE, EventColumns
from recsys.experiments.assignment import arm_index_many
from recsys.experiments.config import ExperimentConfig

METRICS: tuple[str, ...] = ("ctr", "share_rate", "buy_conversion", "gmv_per_user")
SRM_ALPHA = 0.001


# ------------------------------------------------------------------------------------------- models


class Estimate(BaseModel):
    value: float | None
    ci_low: float | None
    ci_high: float | None


class Comparison(BaseModel):
    """One treatment arm vs the control on one metric."""

    metric: str
    control: float | None
    treatment: float | None
    diff: float | None
    lift: float | None
    """Relative lift, ``treatment / control - 1``."""
    lift_ci_low: float | None
    lift_ci_high: float | None
    p_value: float | None
    significant: bool


class ArmReadout(BaseModel):
    name: str
    variant: str
    share: float
    is_control: bool
    users: int
    impressions: int
    clicks: int
    shares: int
    buys: int
    buyers: int
    gmv: float
    ctr: Estimate
    share_rate: Estimate
    buy_conversion: Estimate
    gmv_per_user: Estimate
    buys_per_click: float | None
    vs_control: dict[str, Comparison]
    """Empty for the control arm."""


class SRMCheck(BaseModel):
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float | None
    p_value: float | None
    warning: bool
    message: str


class ExperimentReport(BaseModel):
    experiment: str
    control: str
    start: str | None
    stop: str | None
    alpha: float
    confidence: float
    events_in_window: int
    events_outside_window: int
    events_outside_population: int
    arms: list[ArmReadout]
    srm: SRMCheck
    srm_warning: bool
    notes: list[str]

    def arm(self, name: str) -> ArmReadout:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)


# -------------------------------------------------------------------------------------- user table


@dataclass
class UserMetrics:
    """Per-user aggregates of one experiment's population; ``arm`` is an index into ``experiment.arms``."""

    user_id: np.ndarray
    arm: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    shares: np.ndarray
    buys: np.ndarray
    gmv: np.ndarray

    def select(self, mask: np.ndarray) -> UserMetrics:
        return UserMetrics(
            self.user_id[mask],
            self.arm[mask],
            self.impressions[mask],
            self.clicks[mask],
            self.shares[mask],
            self.buys[mask],
            self.gmv[mask],
        )


def user_metrics(events: EventColumns, experiment: ExperimentConfig) -> tuple[UserMetrics, int]:
    """Aggregate in-window events per user; returns the population and the count of events left out."""
    uniq, inv = np.unique(events.user_id, return_inverse=True)
    n = len(uniq)

    def count(code: int) -> np.ndarray:
        return np.bincount(inv, weights=(events.action == code).astype(np.float64), minlength=n)

    impressions = count(IMPRESSION)
    is_buy = events.action == BUY
    gmv = np.bincount(inv, weights=np.where(is_buy, np.nan_to_num(events.value), 0.0), minlength=n)
    keep = impressions > 0
    left_out = int((~keep[inv]).sum()) if n else 0
    um = UserMetrics(
        user_id=uniq,
        arm=arm_index_many(uniq, experiment) if n else np.zeros(0, dtype=np.int64),
        impressions=impressions,
        clicks=count(CLICK),
        shares=count(SHARE),
        buys=count(BUY),
        gmv=gmv,
    )
    return um.select(keep), left_out


# ------------------------------------------------------------------------------------------ statistics


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance (users are the independent units)."""
    n = len(num)
    if n == 0 or den.sum() == 0:
        return math.nan, math.nan
    mx, my = float(den.mean()), float(num.mean())
    r = my / mx
    if n < 2:
        return r, math.nan
    vx, vy = float(den.var(ddof=1)), float(num.var(ddof=1))
    cxy = float(np.cov(num, den, ddof=1)[0, 1])
    var = (vy - 2 * r * cxy + r * r * vx) / (mx * mx * n)
    return r, max(var, 0.0)


def _mean(x: np.ndarray) -> tuple[float, float]:
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    if n < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(x.var(ddof=1)) / n


def _normal_estimate(value: float, var: float, z: float) -> Estimate:
    se = math.sqrt(var) if math.isfinite(var) else math.nan
    return Estimate(value=_f(value), ci_low=_f(value - z * se), ci_high=_f(value + z * se))


def _lift(mt: float, vt: float, mc: float, vc: float, z: float) -> tuple[float, float, float]:
    if not (math.isfinite(mc) and mc != 0 and math.isfinite(mt)):
        return math.nan, math.nan, math.nan
    lift = mt / mc - 1.0
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4) if math.isfinite(vt) and math.isfinite(vc) else math.nan
    return lift, lift - z * se, lift + z * se


def _comparison(
    metric: str, mt: float, vt: float, mc: float, vc: float, p: float, z: float, alpha: float
) -> Comparison:
    lift, lo, hi = _lift(mt, vt, mc, vc, z)
    p_out = _f(p)
    return Comparison(
        metric=metric,
        control=_f(mc),
        treatment=_f(mt),
        diff=_f(mt - mc),
        lift=_f(lift),
        lift_ci_low=_f(lo),
        lift_ci_high=_f(hi),
        p_value=p_out,
        significant=p_out is not None and p_out < alpha,
    )


def _z_test(mt: float, vt: float, mc: float, vc: float) -> float:
    se = math.sqrt(vt + vc) if math.isfinite(vt) and math.isfinite(vc) else math.nan
    if not math.isfinite(se) or not math.isfinite(mt - mc):
        return math.nan
    if se == 0:
        return 1.0 if mt == mc else 0.0
    return float(2.0 * stats.norm.sf(abs(mt - mc) / se))


def _welch(t: np.ndarray, c: np.ndarray) -> float:
    if len(t) < 2 or len(c) < 2:
        return math.nan
    if t.var() == 0 and c.var() == 0:
        return 1.0 if t.mean() == c.mean() else 0.0
    return float(stats.ttest_ind(t, c, equal_var=False).pvalue)


def srm_check(
    experiment: ExperimentConfig, users_per_arm: np.ndarray, srm_alpha: float = SRM_ALPHA
) -> SRMCheck:
    """Chi-square goodness of fit of users per arm against the configured traffic shares."""
    names = experiment.arm_names
    shares = np.array([a.share for a in experiment.arms], dtype=np.float64)
    observed = np.asarray(users_per_arm, dtype=np.float64)
    total = float(observed.sum())
    expected = shares / shares.sum() * total
    obs_d = {n: int(o) for n, o in zip(names, observed, strict=True)}
    exp_d = {n: float(e) for n, e in zip(names, expected, strict=True)}
    if len(names) < 2 or total == 0:
        why = "only one arm" if len(names) < 2 else "no users"
        return SRMCheck(
            observed=obs_d,
            expected=exp_d,
            chi2=None,
            p_value=None,
            warning=False,
            message=f"SRM not checked: {why}",
        )
    res = stats.chisquare(observed, f_exp=expected)
    chi2, p = float(res.statistic), float(res.pvalue)
    parts = ", ".join(
        f"{n} {int(o):,} vs {e:,.0f} expected" for n, o, e in zip(names, observed, expected, strict=True)
    )
    if p < srm_alpha:
        msg = (
            f"SAMPLE RATIO MISMATCH in experiment {experiment.name!r}: {parts} "
            f"(chi2={chi2:.1f}, p={p:.2e} < {srm_alpha}). "
            "Assignment or logging is broken; do NOT trust this readout until the cause is found."
        )
        return SRMCheck(observed=obs_d, expected=exp_d, chi2=chi2, p_value=p, warning=True, message=msg)
    return SRMCheck(
        observed=obs_d,
        expected=exp_d,
        chi2=chi2,
        p_value=p,
        warning=False,
        message=f"no SRM: {parts} (p={p:.3g})",
    )


def _gmv_bootstrap(x: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    if len(x) < 2 or x.var() == 0:
        m = float(x.mean()) if len(x) else math.nan
        return m, m
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
        batch=max(1, 20_000_000 // max(len(x), 1)),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def readout_from_users(
    experiment: ExperimentConfig,
    users: UserMetrics,
    *,
    alpha: float = 0.05,
    srm_alpha: float = SRM_ALPHA,
    bootstrap_resamples: int = 0,
    seed: int = 0,
    events_in_window: int = 0,
    events_outside_window: int = 0,
    events_outside_population: int = 0,
) -> ExperimentReport:
    """The readout from per-user aggregates (the event-level entry point is :func:`experiment_report`).

    ``bootstrap_resamples > 0`` replaces the t interval of ``gmv_per_user`` per arm by a percentile
    bootstrap (``scipy.stats.bootstrap``, seeded) — sturdier for heavy-tailed GMV on small arms.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    confidence = 1.0 - alpha
    z = float(stats.norm.ppf(1 - alpha / 2))
    control = experiment.control_arm
    control_idx = experiment.arm_names.index(control)
    per_arm = [users.select(users.arm == k) for k in range(len(experiment.arms))]
    srm = srm_check(experiment, np.array([len(u.user_id) for u in per_arm]), srm_alpha)

    stats_by_arm: list[dict[str, tuple[float, float]]] = []
    for u in per_arm:
        bought = (u.buys > 0).astype(np.float64)
        stats_by_arm.append(
            {
                "ctr": _ratio(u.clicks, u.impressions),
                "share_rate": _ratio(u.shares, u.impressions),
                "buy_conversion": _mean(bought),
                "gmv_per_user": _mean(u.gmv),
            }
        )

    arms: list[ArmReadout] = []
    c_users = per_arm[control_idx]
    for k, (cfg, u) in enumerate(zip(experiment.arms, per_arm, strict=True)):
        n = len(u.user_id)
        s = stats_by_arm[k]
        buyers = int((u.buys > 0).sum())
        if n:
            ci = stats.binomtest(buyers, n).proportion_ci(confidence_level=confidence, method="wilson")
            conv = Estimate(value=buyers / n, ci_low=float(ci.low), ci_high=float(ci.high))
        else:
            conv = Estimate(value=None, ci_low=None, ci_high=None)
        if bootstrap_resamples > 0 and n:
            lo, hi = _gmv_bootstrap(u.gmv, confidence, bootstrap_resamples, seed + k)
            gmv_est = Estimate(value=_f(s["gmv_per_user"][0]), ci_low=_f(lo), ci_high=_f(hi))
        else:
            m, v = s["gmv_per_user"]
            half = (
                float(stats.t.ppf(1 - alpha / 2, n - 1)) * math.sqrt(v)
                if n >= 2 and math.isfinite(v)
                else math.nan
            )
            gmv_est = Estimate(value=_f(m), ci_low=_f(m - half), ci_high=_f(m + half))
        vs: dict[str, Comparison] = {}
        if k != control_idx:
            c = stats_by_arm[control_idx]
            for metric in ("ctr", "share_rate"):
                (mt, vt), (mc, vc) = s[metric], c[metric]
                vs[metric] = _comparison(metric, mt, vt, mc, vc, _z_test(mt, vt, mc, vc), z, alpha)
            t_bought, c_bought = (u.buys > 0).astype(np.float64), (c_users.buys > 0).astype(np.float64)
            (mt, vt), (mc, vc) = s["buy_conversion"], c["buy_conversion"]
            vs["buy_conversion"] = _comparison(
                "buy_conversion", mt, vt, mc, vc, _welch(t_bought, c_bought), z, alpha
            )
            (mt, vt), (mc, vc) = s["gmv_per_user"], c["gmv_per_user"]
            vs["gmv_per_user"] = _comparison(
                "gmv_per_user", mt, vt, mc, vc, _welch(u.gmv, c_users.gmv), z, alpha
            )
        clicks = int(u.clicks.sum())
        arms.append(
            ArmReadout(
                name=cfg.name,
                variant=cfg.variant,
                share=cfg.share,
                is_control=k == control_idx,
                users=n,
                impressions=int(u.impressions.sum()),
                clicks=clicks,
                shares=int(u.shares.sum()),
                buys=int(u.buys.sum()),
                buyers=buyers,
                gmv=float(u.gmv.sum()),
                ctr=_normal_estimate(*s["ctr"], z),
                share_rate=_normal_estimate(*s["share_rate"], z),
                buy_conversion=conv,
                gmv_per_user=gmv_est,
                buys_per_click=_f(float(u.buys.sum()) / clicks) if clicks else None,
                vs_control=vs,
            )
        )

    notes = [
        "users = assigned users with >= 1 impression in the window; all intervals are user-level",
        "ctr/share_rate: delta-method ratio CI, z-test; buy_conversion = buyers/users: Wilson CI, Welch t; "
        "gmv_per_user: " + ("percentile bootstrap" if bootstrap_resamples > 0 else "t") + " CI, Welch t",
        f"alpha={alpha} per comparison, no multiple-testing correction",
    ]
    if srm.warning:
        notes.insert(0, srm.message)
    return ExperimentReport(
        experiment=experiment.name,
        control=control,
        start=None if experiment.start is None else experiment.start.isoformat(),
        stop=None if experiment.stop is None else experiment.stop.isoformat(),
        alpha=alpha,
        confidence=confidence,
        events_in_window=events_in_window,
        events_outside_window=events_outside_window,
        events_outside_population=events_outside_population,
        arms=arms,
        srm=srm,
        srm_warning=srm.warning,
        notes=notes,
    )


def experiment_report(
    events: Any,
    experiment: ExperimentConfig,
    *,
    alpha: float = 0.05,
    srm_alpha: float = SRM_ALPHA,
    bootstrap_resamples: int = 0,
    seed: int = 0,
) -> ExperimentReport:
    """The readout of ``experiment`` over an events table (pyarrow Table, column mapping or EventColumns)."""
    cols = EventColumns.from_table(events)
    mask = cols.in_window(experiment.start_ts, experiment.stop_ts)
    inside = cols.select(mask)
    users, left_out = user_metrics(inside, experiment)
    return readout_from_users(
        experiment,
        users,
        alpha=alpha,
        srm_alpha=srm_alpha,
        bootstrap_resamples=bootstrap_resamples,
        seed=seed,
        events_in_window=int(mask.sum()),
        events_outside_window=int((~mask).sum()),
        events_outside_population=left_out,
    )

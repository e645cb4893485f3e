"""Cumulative per-arm readout over time, for the dashboard's charts.

Why cumulative and built on ``readout``: the question a product team asks of a running experiment is
"what would the readout say if we stopped at day d?" — so each point is the full readout over the
events from the window start up to the end of that bucket, computed by the same
``user_metrics``/``readout_from_users`` as the final report (one set of statistics, never two).
Intervals narrow as users accumulate; an early wide interval is the picture of not-yet-enough data.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from recsys.event_columns import EventColumns
from recsys.experiments.config import ExperimentConfig
from recsys.experiments.readout import Estimate, readout_from_users, user_metrics

BUCKET_SECONDS: dict[str, int] = {"hour": 3_600, "day": 86_400}
Bucket = Literal["hour", "day"]
DEFAULT_MAX_POINTS = 60


class ArmPoint(BaseModel):
    """One arm's cumulative readout at the end of one time bucket."""

    users: int
    impressions: int
    ctr: Estimate
    share_rate: Estimate
    buy_conversion: Estimate
    gmv_per_user: Estimate
    ctr_lift: float | None
    """Relative CTR lift vs control (None for the control arm or without data)."""
    buy_conversion_lift: float | None


class TimePoint(BaseModel):
    ts: int
    """Exclusive end (unix seconds) of the cumulative window of this point."""
    srm_warning: bool
    arms: dict[str, ArmPoint]


class ExperimentTimeseries(BaseModel):
    experiment: str
    control: str
    arm_names: list[str]
    bucket_seconds: int
    alpha: float
    points: list[TimePoint]


def _cutoffs(ts: np.ndarray, bucket_seconds: int, max_points: int) -> np.ndarray:
    """Bucket ends covering ``ts`` (aligned to whole buckets in UTC); widened to at most ``max_points``."""
    first = int(ts.min()) // bucket_seconds * bucket_seconds
    last = int(ts.max()) // bucket_seconds * bucket_seconds + bucket_seconds
    n = (last - first) // bucket_seconds
    step = bucket_seconds * max(1, math.ceil(n / max_points))
    ends = np.arange(first + step, last + step, step, dtype=np.int64)
    ends[-1] = max(int(ends[-1]), last)
    return ends


def experiment_timeseries(
    events: Any,
    experiment: ExperimentConfig,
    *,
    bucket: Bucket = "day",
    alpha: float = 0.05,
    max_points: int = DEFAULT_MAX_POINTS,
) -> ExperimentTimeseries:
    """Cumulative readouts at the end of each ``bucket`` of the experiment's window.

    ``events`` is any table :func:`recsys.event_columns.EventColumns.from_table` accepts. When
    the window spans more than ``max_points`` buckets, buckets are merged so the series stays short.
    """
    if bucket not in BUCKET_SECONDS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKET_SECONDS)}, got {bucket!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    seconds = BUCKET_SECONDS[bucket]
    cols = EventColumns.from_table(events)
    inside = cols.select(cols.in_window(experiment.start_ts, experiment.stop_ts))
    out = ExperimentTimeseries(
        experiment=experiment.name,
        control=experiment.control_arm,
        arm_names=experiment.arm_names,
        bucket_seconds=seconds,
        alpha=alpha,
        points=[],
    )
    if len(inside) == 0:
        return out
    order = np.argsort(inside.ts, kind="stable")
    inside = inside.select(order)
    for end in _cutoffs(inside.ts, seconds, max_points).tolist():
        upto = int(np.searchsorted(inside.ts, end, side="left"))
        if upto == 0:
            continue
        users, _ = user_metrics(inside.select(np.arange(upto)), experiment)
        report = readout_from_users(experiment, users, alpha=alpha)
        arms: dict[str, ArmPoint] = {}
        for a in report.arms:
            ctr_cmp = a.vs_control.get("ctr")
            conv_cmp = a.vs_control.get("buy_conversion")
            arms[a.name] = ArmPoint(
                users=a.users,
                impressions=a.impressions,
                ctr=a.ctr,
                share_rate=a.share_rate,
                buy_conversion=a.buy_conversion,
                gmv_per_user=a.gmv_per_user,
                ctr_lift=None if ctr_cmp is None else ctr_cmp.lift,
                buy_conversion_lift=None if conv_cmp is None else conv_cmp.lift,
            )
        out.points.append(TimePoint(ts=int(end), srm_warning=report.srm_warning, arms=arms))
    return out

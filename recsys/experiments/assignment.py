"""Deterministic, sticky arm assignment: ``blake2b(f"{salt}:{user_id}")`` → bucket → arm.

Why a cryptographic hash and not Python's ``hash()``: ``hash()`` of a string is randomised per process
(PYTHONHASHSEED), so a user would flip arms on every restart. blake2b gives the same bucket in every
process, on every machine, forever; the per-experiment salt makes experiments independent of each other.

Buckets are ``[0, N_BUCKETS)``; arm ``k`` owns buckets ``[round(N*c_{k-1}), round(N*c_k))`` where ``c`` are
the cumulative shares, so a 50/50 split is exactly 5,000 buckets each.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from recsys.experiments.config import ExperimentConfig

N_BUCKETS = 10_000


def bucket(user_id: int, salt: str) -> int:
    """The user's bucket in ``[0, N_BUCKETS)`` for this salt; identical across processes and machines."""
    digest = hashlib.blake2b(f"{salt}:{int(user_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % N_BUCKETS


def bucket_many(user_ids: np.ndarray, salt: str) -> np.ndarray:
    """Vectorised :func:`bucket` (hashes each distinct id once)."""
    ids = np.asarray(user_ids, dtype=np.int64)
    uniq, inverse = np.unique(ids, return_inverse=True)
    prefix = f"{salt}:"
    b = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(f"{prefix}{u}".encode(), digest_size=8).digest(), "big")
            % N_BUCKETS
            for u in uniq.tolist()
        ),
        dtype=np.int64,
        count=len(uniq),
    )
    return b[inverse.reshape(ids.shape)]


def _bounds(experiment: ExperimentConfig) -> list[int]:
    """Exclusive upper bucket bound of each arm, in plain Python (the per-request path: a handful of
    arms, where numpy's call overhead is most of the cost). Same sums, same round-half-to-even."""
    bounds = [round(c * N_BUCKETS) for c in itertools.accumulate(a.share for a in experiment.arms)]
    bounds[-1] = N_BUCKETS
    return bounds


def bucket_bounds(experiment: ExperimentConfig) -> np.ndarray:
    """Exclusive upper bucket bound of each arm (the last one is always ``N_BUCKETS``)."""
    return np.array(_bounds(experiment), dtype=np.int64)


def arm_index_many(user_ids: np.ndarray, experiment: ExperimentConfig) -> np.ndarray:
    """Arm position (index into ``experiment.arms``) of every user id."""
    return np.searchsorted(bucket_bounds(experiment), bucket_many(user_ids, experiment.salt), side="right")


def assign(user_id: int, experiment: ExperimentConfig) -> str:
    """The arm name of one user: deterministic and sticky."""
    idx = bisect.bisect_right(_bounds(experiment), bucket(user_id, experiment.salt))
    return experiment.arms[idx].name


def assign_many(user_ids: np.ndarray, experiment: ExperimentConfig) -> np.ndarray:
    """Arm names (a numpy string array) of many users, same answer as :func:`assign` for each."""
    names = np.array(experiment.arm_names)
    return names[arm_index_many(user_ids, experiment)]


def active(experiment: ExperimentConfig, now: datetime | float | int | None = None) -> bool:
    """Whether ``now`` (datetime or unix seconds; default: the current time) is in ``[start, stop)``."""
    if now is None:
        t = datetime.now(UTC).timestamp()
    elif isinstance(now, datetime):
        t = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()
    else:
        t = float(now)
    if experiment.start is not None and t < experiment.start.timestamp():
        return False
    return not (experiment.stop is not None and t >= experiment.stop.timestamp())


@dataclass(frozen=True)
class ArmChoice:
    """What the feed needs to build a page and name it: the experiment (if any), arm and ranking variant."""

    experiment: str | None
    arm: str
    variant: str


def choose_variant(
    user_id: int,
    experiments: Mapping[str, ExperimentConfig],
    default_variant: str,
    now: datetime | float | int | None = None,
) -> ArmChoice:
    """The ranking variant for a user: from the first active experiment (by name), else the default.

    Run one experiment per surface at a time: when two overlap, the first by name takes every user,
    and the other's readout (which assigns by hash alone) would be diluted.
    """
    for name in sorted(experiments):
        exp = experiments[name]
        if active(exp, now):
            arm = exp.arm(assign(user_id, exp))
            return ArmChoice(experiment=exp.name, arm=arm.name, variant=arm.variant)
    return ArmChoice(experiment=None, arm=default_variant, variant=default_variant)

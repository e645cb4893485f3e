"""Which ranking variant (experiment arm) a user gets, and what the feed response calls it.

Why its own module: the feed router only calls ``choose_arm`` and knows nothing about experiments.
Assignment is ``recsys.experiments.assignment.choose_variant``: a salted blake2b hash of the user id,
so it is deterministic and sticky across restarts, replicas and machines. The first active experiment
(by name) takes the user; with none active every user gets the default variant.

Arm labels (the feed response's ``arm``): ``"<experiment>:<arm>"`` inside an experiment (e.g.
``"feed_mix:no_kol"``), else the default variant's name (``"default"`` unless configured otherwise).
At startup ``serving.experiments`` registers every label as an alias of its arm's ranking variant in
the app's variants (``ServiceState.variants``), so ``variants[label]`` is the variant to rank with.

The experiments are passed in: the app's lifespan loads them into ``ServiceState.experiments`` and the
feed reads them from there (no process-wide table, so two apps in one process never share arms).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from recsys.experiments.assignment import ArmChoice, choose_variant
from recsys.experiments.config import ExperimentConfig
from recsys.ranking.variants import DEFAULT_VARIANT_NAME


def arm_label_for(experiment: str, arm: str) -> str:
    return f"{experiment}:{arm}"


def arm_label(choice: ArmChoice) -> str:
    """``"<experiment>:<arm>"`` or, outside any experiment, the variant name."""
    return choice.variant if choice.experiment is None else arm_label_for(choice.experiment, choice.arm)


def choose_arm(
    user_id: int,
    default_arm: str = DEFAULT_VARIANT_NAME,
    experiments: Mapping[str, ExperimentConfig] | None = None,
    now: datetime | float | int | None = None,
) -> str:
    """The arm label of ``user_id``; also a key of ``ServiceState.variants`` (module docstring)."""
    return arm_label(choose_variant(user_id, experiments or {}, default_arm, now))

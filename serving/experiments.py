"""Experiments in the service: loaded and checked once at startup, then used by the feed and reports.

Why check at startup: an experiment whose arm names a ranking variant that does not exist would
silently send its users to the fallback variant for weeks; the service refuses to start instead, with
a message naming the experiment, arm and variant. Each arm's label (``"<experiment>:<arm>"``, see
``serving.arms``) is registered as an alias of its variant so the feed ranks with the arm's variant.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from recsys.experiments.assignment import active
from recsys.experiments.config import ExperimentConfig, ExperimentConfigError, load_experiments
from recsys.ranking.variants import RankingVariant
from serving import arms
from serving.event_source import event_source_for
from serving.service_state import service_state

log = logging.getLogger(__name__)


def load_serving_experiments(
    directory: Path | None, variants: Mapping[str, RankingVariant]
) -> dict[str, ExperimentConfig]:
    """All experiments in ``directory`` (none when ``None``); raises ExperimentConfigError naming the
    experiment, arm and variant when an arm's variant is not among the loaded ranking variants."""
    if directory is None:
        return {}
    experiments = load_experiments(directory)
    for exp in experiments.values():
        for arm in exp.arms:
            if arm.variant not in variants:
                raise ExperimentConfigError(
                    f"{directory}: experiment {exp.name!r} arm {arm.name!r} names ranking variant "
                    f"{arm.variant!r}, which does not exist (have {', '.join(sorted(variants))})"
                )
    return experiments


def arm_aliases(
    experiments: Mapping[str, ExperimentConfig], variants: Mapping[str, RankingVariant]
) -> dict[str, RankingVariant]:
    """``"<experiment>:<arm>"`` → the arm's ranking variant, for every arm of every experiment."""
    return {
        arms.arm_label_for(exp.name, arm.name): variants[arm.variant]
        for exp in experiments.values()
        for arm in exp.arms
    }


def describe(experiments: Mapping[str, ExperimentConfig]) -> list[dict[str, object]]:
    """What ``GET /v1/experiments`` lists."""
    return [
        {
            "name": e.name,
            "description": e.description,
            "control": e.control_arm,
            "start": None if e.start is None else e.start.isoformat(),
            "stop": None if e.stop is None else e.stop.isoformat(),
            "active": active(e),
            "arms": [
                {
                    "name": a.name,
                    "variant": a.variant,
                    "share": a.share,
                    "label": arms.arm_label_for(e.name, a.name),
                }
                for a in e.arms
            ],
        }
        for e in sorted(experiments.values(), key=lambda e: e.name)
    ]


@asynccontextmanager
async def experiments_context(app: FastAPI) -> AsyncIterator[None]:
    """Entered by the app's lifespan once the variants are loaded: experiments (their arm labels become
    variant aliases) and the report event source, closed at shutdown."""
    state = service_state(app)
    settings, variants = state.settings, state.variants
    experiments = load_serving_experiments(settings.experiments_dir, variants)
    variants.update(arm_aliases(experiments, variants))
    state.experiments = experiments
    source = state.event_source = event_source_for(settings)
    running = [e.name for e in experiments.values() if active(e)]
    log.info(
        "experiments loaded: %s (active: %s)", ", ".join(experiments) or "none", ", ".join(running) or "none"
    )
    try:
        yield
    finally:
        state.experiments = {}
        source.close()

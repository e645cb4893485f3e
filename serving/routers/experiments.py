"""``/v1/experiments``: the configured A/B tests, each arm's readout, and the readout over time.

Why computed on request: the readout must reflect the events logged so far; ``serving.event_source``
runs it in a worker thread and reuses it for a short while, so a dashboard refresh costs nothing.
The app's lifespan loads and checks the experiments at startup (``serving.experiments``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from recsys.event_columns import EventTableError
from recsys.experiments.config import ExperimentConfig
from recsys.experiments.readout import ExperimentReport, experiment_report
from recsys.experiments.timeseries import Bucket, ExperimentTimeseries, experiment_timeseries
from serving.event_source import EventSource, EventSourceError, EventTables, get_event_source
from serving.experiments import describe
from serving.schemas import ErrorResponse
from serving.service_state import service_state

router = APIRouter(tags=["experiments"])

EventSourceDep = Annotated[EventSource, Depends(get_event_source)]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


async def _experiments(request: Request) -> dict[str, ExperimentConfig]:
    experiments: dict[str, ExperimentConfig] = service_state(request.app).experiments
    return experiments


ExperimentsDep = Annotated[dict[str, ExperimentConfig], Depends(_experiments)]


def _find(experiments: dict[str, ExperimentConfig], name: str) -> ExperimentConfig:
    if name not in experiments:
        known = ", ".join(sorted(experiments)) or "none"
        raise HTTPException(status_code=404, detail=f"no experiment named {name!r} (known: {known})")
    return experiments[name]


async def _computed(source: EventSource, key: tuple[Any, ...], compute: Any) -> Any:
    try:
        return await source.report(key, compute)
    except EventSourceError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except EventTableError as exc:
        raise HTTPException(status_code=503, detail=f"events unusable for reports: {exc}") from None


@router.get("/v1/experiments", summary="Configured experiments with arms, traffic shares and whether active")
async def list_experiments(experiments: ExperimentsDep) -> list[dict[str, Any]]:
    return describe(experiments)


@router.get(
    "/v1/experiments/{name}/report",
    response_model=ExperimentReport,
    responses=ERRORS,
    summary="Per-arm readout with CIs, lift and p-values vs control, and the sample-ratio check",
)
async def experiment_readout(
    name: str,
    experiments: ExperimentsDep,
    source: EventSourceDep,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> ExperimentReport:
    exp = _find(experiments, name)

    def compute(tables: EventTables) -> ExperimentReport:
        return experiment_report(tables.events, exp, alpha=alpha)

    report: ExperimentReport = await _computed(source, ("experiment", name, alpha), compute)
    return report


@router.get(
    "/v1/experiments/{name}/timeseries",
    response_model=ExperimentTimeseries,
    responses=ERRORS,
    summary="Cumulative per-arm readout at the end of each day (or hour), for charts",
)
async def experiment_series(
    name: str,
    experiments: ExperimentsDep,
    source: EventSourceDep,
    bucket: Bucket = "day",
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> ExperimentTimeseries:
    exp = _find(experiments, name)

    def compute(tables: EventTables) -> ExperimentTimeseries:
        return experiment_timeseries(tables.events, exp, bucket=bucket, alpha=alpha)

    series: ExperimentTimeseries = await _computed(source, ("timeseries", name, bucket, alpha), compute)
    return series

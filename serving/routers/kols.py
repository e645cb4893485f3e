"""``/v1/kols``: what each creator really sells (funnel, GMV direct and through shares, commission).

Why here and not only in the CLI: merchants and ops look at the dashboard, not at a terminal. The
numbers are ``recsys.attribution.kol_attribution`` over the configured event source, computed in a
worker thread and cached briefly (``serving.event_source``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel

from recsys.attribution import (
    AttributionError,
    AttributionReport,
    KolReport,
    UnattributedBucket,
    kol_attribution,
)
from recsys.event_columns import EventTableError
from recsys.ids import ID_PATTERN, MAX_ID_LENGTH, IdError, check_id
from serving.deps import HolderDep, SettingsDep
from serving.event_source import EventSource, EventSourceError, EventTables, get_event_source, load_costs
from serving.schemas import ID_DESCRIPTION, ErrorResponse
from serving.state import ModelHolder

router = APIRouter(tags=["kols"])

EventSourceDep = Annotated[EventSource, Depends(get_event_source)]
Commission = Annotated[float | None, Query(ge=0, le=1, description="commission rate on GMV, e.g. 0.1")]


class KolLeaderboard(BaseModel):
    commission_rate: float | None
    depth_limit: int
    log_buys: int
    log_gmv: float
    attributed_gmv: float
    balanced: bool
    costs_known: bool
    """Whether creator costs are configured (``KOLFEED_KOL_COSTS_PATH``), i.e. ROI can be computed."""
    kols_total: int
    kols: list[KolReport]
    """The top ``limit`` KOLs by credited GMV."""
    unattributed: UnattributedBucket


async def _attribution(
    source: EventSource, holder: ModelHolder, commission: float | None, costs_path: Path | None
) -> AttributionReport:
    """The report over the event source, creators named by the served run's labels (string ids)."""
    loaded = holder.current
    kol_labels = loaded.model.labels.get("kol") if loaded is not None else None
    run_key = (loaded.run_id, loaded.version) if loaded is not None else None

    def compute(tables: EventTables) -> AttributionReport:
        names = {**tables.kol_labels, **(kol_labels or {})}  # the files' spelling, else the run's
        return kol_attribution(
            tables.events,
            items=tables.items,
            kols=tables.kols,
            follows=tables.follows,
            commission_rate=commission,
            costs=None if costs_path is None else load_costs(costs_path),
            kol_labels=names,
        )

    try:
        key = ("kols", commission, costs_path, run_key)  # a reload may bring new labels
        report: AttributionReport = await source.report(key, compute)
    except EventSourceError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except (EventTableError, AttributionError) as exc:
        raise HTTPException(status_code=503, detail=f"events unusable for attribution: {exc}") from None
    return report


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.get(
    "/v1/kols/leaderboard",
    response_model=KolLeaderboard,
    responses=ERRORS,
    summary="KOLs by credited GMV: impressions → clicks → shares → buys → GMV, via-share GMV, commission",
)
async def leaderboard(
    source: EventSourceDep,
    settings: SettingsDep,
    holder: HolderDep,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 20,
    commission: Commission = None,
) -> KolLeaderboard:
    report = await _attribution(source, holder, commission, settings.kol_costs_path)
    return KolLeaderboard(
        commission_rate=report.commission_rate,
        depth_limit=report.depth_limit,
        log_buys=report.log_buys,
        log_gmv=report.log_gmv,
        attributed_gmv=report.attributed_gmv,
        balanced=report.balanced,
        costs_known=settings.kol_costs_path is not None,
        kols_total=len(report.kols),
        kols=report.kols[:limit],
        unattributed=report.unattributed,
    )


@router.get(
    "/v1/kols/{kol_id:path}/report",
    response_model=KolReport,
    responses=ERRORS,
    summary="One KOL's attribution report",
)
async def kol_report(
    kol_id: Annotated[
        str,
        PathParam(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            description=ID_DESCRIPTION,
            json_schema_extra={"pattern": ID_PATTERN},
            examples=["mia_beauty"],
        ),
    ],
    source: EventSourceDep,
    settings: SettingsDep,
    holder: HolderDep,
    commission: Commission = None,
) -> KolReport:
    try:
        kol_id = check_id(kol_id, "kol_id")
    except IdError as exc:
        raise HTTPException(status_code=422, detail=f"path {exc}") from None
    report = await _attribution(source, holder, commission, settings.kol_costs_path)
    try:
        return report.kol(kol_id)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no events for KOL {kol_id}") from None

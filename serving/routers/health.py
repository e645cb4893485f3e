"""``/livez``, ``/readyz``, ``/metrics``: what an orchestrator and Prometheus poll.

Why two probes: liveness only says the process answers (restart if not); readiness says this
replica can serve a personalised feed right now (model loaded AND store answering ping), so a load
balancer stops routing to it without killing it. While the store is down the body says
``degraded: true`` (feeds still answered from the model) and how many logged events await replay.
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from serving.deps import HolderDep, MetricsDep, SettingsDep, StoreDep
from serving.service_state import service_state

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 1.0


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


_READY_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "model_version": {"type": ["integer", "null"]},
                "run_id": {"type": ["string", "null"]},
                "store_ok": {"type": "boolean"},
                "degraded": {"type": "boolean"},
                "event_log": {"type": ["object", "null"]},
                "pid": {"type": "integer"},
            },
            "required": ["ready", "reasons", "store_ok", "degraded"],
        }
    }
}


@router.get(
    "/readyz",
    summary="Model loaded and feature store reachable",
    response_model=None,
    responses={
        200: {"description": "Ready", "content": _READY_BODY},
        503: {
            "description": "Not ready: `reasons` says why (no model, store unreachable)",
            "content": _READY_BODY,
        },
    },
)
async def readyz(request: Request, holder: HolderDep, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    reasons: list[str] = []
    loaded = holder.current
    if loaded is None:
        reasons.append("no model loaded")
    try:
        ok = await asyncio.wait_for(store.ping(), timeout=max(PING_TIMEOUT_S, settings.request_deadline_s))
    except TimeoutError:
        ok = False
        reasons.append("feature store ping timed out")
    except Exception as exc:  # any failure of the dependency means "not ready", never a 500
        ok = False
        log.warning("store ping failed: %s", type(exc).__name__)
        reasons.append(f"feature store ping failed ({type(exc).__name__})")
    else:
        if not ok:
            reasons.append("feature store ping returned false")
    body: dict[str, object] = {
        "ready": not reasons,
        "reasons": reasons,
        "model_version": loaded.version if loaded else None,
        "run_id": loaded.run_id if loaded else None,
        "store_ok": ok,
        # degraded: feeds are answered from the model alone and events wait in the log for the store
        "degraded": loaded is not None and not ok,
        "event_log": event_log_status(request),
        "pid": os.getpid(),  # which worker process answered (kolfeed serve --workers N)
    }
    return JSONResponse(body, status_code=200 if not reasons else 503)


def event_log_status(request: Request) -> dict[str, object] | None:
    """Log → store replay state (None when the service runs without an event log)."""
    state = service_state(request.app)
    event_log, replayer, outbox = state.event_log, state.replayer, state.outbox
    if event_log is None or replayer is None or outbox is None:
        return None
    return {
        "last_seq": event_log.last_seq,
        "store_position": replayer.position,
        "pending": replayer.pending,
        "store_rebuilds": outbox.status.rebuilds,
        "store_synced": outbox.status.store_synced,
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics_endpoint(metrics: MetricsDep) -> Response:
    payload, content_type = metrics.render()
    return Response(content=payload, media_type=content_type)

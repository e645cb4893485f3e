"""``/v1/admin/*``: hot reload of the served run, behind a bearer token.

Why so strict: reload reads files from disk chosen by the caller. Without a configured token the
endpoints are off (403) unless dev mode is on; the token is compared in constant time; only run
directories under ``runs_root`` are accepted (resolved, so ``..`` and symlinks cannot escape).
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsys.artifacts import ArtifactError
from serving.deps import HolderDep, MetricsDep, SettingsDep
from serving.run_pointer import RunChannel, ServedRun, announce
from serving.schemas import ErrorResponse, ModelInfo, ReloadRequest, ReloadResponse
from serving.service_state import service_state
from serving.settings import Settings
from serving.state import LoadedModel

log = logging.getLogger(__name__)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


_bearer = HTTPBearer(auto_error=False, description="KOLFEED_ADMIN_TOKEN, as `Authorization: Bearer <token>`")


async def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token is not None else ""
    if not token:
        if settings.dev_mode:
            return
        raise HTTPException(status_code=403, detail="admin API disabled: set KOLFEED_ADMIN_TOKEN")
    given = credentials.credentials if credentials is not None else ""
    if not given.strip():
        raise HTTPException(status_code=401, detail="missing bearer token", headers=_CHALLENGE)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(status_code=401, detail="invalid bearer token", headers=_CHALLENGE)


router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
        403: {
            "model": ErrorResponse,
            "description": "admin API disabled (no KOLFEED_ADMIN_TOKEN configured)",
        },
    },
)


def resolve_run_dir(raw: str, settings: Settings) -> Path:
    """A caller-supplied run dir, resolved, and refused (400) unless strictly inside runs_root."""
    if "\x00" in raw:
        raise HTTPException(status_code=400, detail="run_dir contains a NUL byte")
    root = settings.runs_root.resolve()
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise HTTPException(status_code=400, detail=f"run_dir must be a directory inside runs_root ({root})")
    return resolved


def model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(
        run_id=loaded.run_id, version=loaded.version, run_dir=str(loaded.run_dir), loaded_at=loaded.loaded_at
    )


@router.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}})
async def current_model(holder: HolderDep) -> ModelInfo:
    loaded = holder.current
    if loaded is None:
        raise HTTPException(status_code=503, detail="no model loaded")
    return model_info(loaded)


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        400: {"model": ErrorResponse},
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
    },
    summary="Load another run directory aside, verify it, and swap it in",
)
async def reload_model(
    body: ReloadRequest, request: Request, settings: SettingsDep, holder: HolderDep, metrics: MetricsDep
) -> ReloadResponse:
    run_dir = resolve_run_dir(body.run_dir, settings)
    try:
        previous, new = await holder.reload(run_dir)
    except ArtifactError as exc:
        metrics.reloads.labels(outcome="failed").inc()
        current = holder.current
        still = f"; still serving {current.run_id} v{current.version}" if current else ""
        log.warning("reload of %s refused: %s", run_dir, exc)
        raise HTTPException(status_code=409, detail=f"reload refused: {exc}{still}") from None
    metrics.reloads.labels(outcome="ok").inc()
    metrics.model_version.set(new.version)
    # the other workers and replicas follow the announcement (serving/run_pointer.py)
    channels: list[RunChannel] = service_state(request.app).run_channels
    await announce(channels, ServedRun(new.run_dir, new.run_id, new.version))
    return ReloadResponse(previous=model_info(previous) if previous else None, current=model_info(new))

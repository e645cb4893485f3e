"""``/dashboard``: one page with each experiment's arms over time and the KOL leaderboard.

Why a static page drawing its own SVG: it must work offline (no CDN) and stay small; the page only
fetches the JSON endpoints (``/v1/experiments``, ``/v1/experiments/{name}/report|timeseries``,
``/v1/kols/leaderboard``) and draws. Assets are served from a fixed allow-list under ``/static``, so
no request path ever reaches the filesystem.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS: dict[str, str] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@router.get("/dashboard", response_class=FileResponse, summary="Experiments and KOL dashboard (HTML)")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}", response_class=FileResponse, include_in_schema=False)
async def static_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no static asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name])

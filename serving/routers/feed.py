"""``GET /v1/feed``: the HTTP adapter of serving/feed_service.py (query in, page bytes or an error out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from serving.deps import FeedEnvDep, StoreDep
from serving.feed_service import FeedError, get_feed
from serving.schemas import ErrorResponse, FeedQuery, FeedResponse

router = APIRouter(tags=["feed"])


@router.get(
    "/v1/feed",
    name="get_feed",  # the route's name and OpenAPI operationId, as when get_feed itself was the endpoint
    response_model=FeedResponse,  # documents the body (OpenAPI); the bytes come from FeedPage.json_bytes
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="A personalised page of items for one user",
)
async def feed_endpoint(params: Annotated[FeedQuery, Query()], env: FeedEnvDep, store: StoreDep) -> Response:
    try:
        page = await get_feed(
            params,
            env.settings,
            env.holder,
            store,
            env.variants,
            env.metrics,
            env.trending_cache,
            env.experiments,
        )
    except FeedError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return Response(page.json_bytes(), media_type="application/json")

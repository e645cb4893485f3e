"""``GET /v1/feed``: one personalised page, answered even when the feature store is down.

Why the degraded path: the frontend must never show an error page because Redis hiccuped. Store
reads get a deadline; on StoreUnavailable or timeout the page is built from the model alone (empty
live context, run popularity as trending) and flagged ``degraded``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from features.base import FeatureStore, UserState
from features.errors import StoreUnavailable
from recsys.ranking.context import UserContext
from serving.arms import choose_arm
from serving.deps import HolderDep, MetricsDep, SettingsDep, StoreDep, VariantsDep
from serving.lookups import friend_ids
from serving.schemas import ErrorResponse, FeedItem, FeedQuery, FeedResponse
from serving.state import LoadedModel

log = logging.getLogger(__name__)

router = APIRouter(tags=["feed"])

RECENT_ITEMS = 50


def context_from_state(user_id: int, state: UserState) -> UserContext:
    """UserState (what the store holds) → UserContext (what the ranker reads)."""
    recent: list[int] = []
    seen_recent: set[int] = set()
    for item in (*state.recent_buys, *state.recent_shares, *state.recent_clicks):
        if item not in seen_recent:
            seen_recent.add(item)
            recent.append(item)
    return UserContext(
        user_id=user_id,
        recent_items=recent[:RECENT_ITEMS],
        seen=set(state.seen),
        bought=set(state.bought),
        hidden_items=set(state.hidden_items),
        hidden_kols=set(state.hidden_kols),
        live_kol_affinity=dict(state.kol_affinity),
    )


async def _friends_bought(
    store: FeatureStore, loaded: LoadedModel, user_id: int, limit: int
) -> dict[int, int]:
    """How many of the user's friends (share graph of the run) bought each item, from live store state."""
    friends = friend_ids(loaded.model, user_id, limit)
    if not friends:
        return {}
    counts: dict[int, int] = {}
    for state in await store.user_states(friends):
        for item in state.bought:
            counts[item] = counts.get(item, 0) + 1
    return counts


async def _live_inputs(
    store: FeatureStore, loaded: LoadedModel, user_id: int, trending_k: int, friends_limit: int
) -> tuple[UserState, list[tuple[int, float]], dict[int, int]]:
    state, trending, friends_bought = await asyncio.gather(
        store.user_state(user_id),
        store.trending(trending_k) if trending_k > 0 else _empty_trending(),
        _friends_bought(store, loaded, user_id, friends_limit),
    )
    return state, trending, friends_bought


async def _empty_trending() -> list[tuple[int, float]]:
    return []


@router.get(
    "/v1/feed",
    response_model=FeedResponse,
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="A personalised page of items for one user",
)
async def get_feed(
    params: Annotated[FeedQuery, Query()],
    settings: SettingsDep,
    holder: HolderDep,
    store: StoreDep,
    variants: VariantsDep,
    metrics: MetricsDep,
) -> FeedResponse:
    loaded = holder.current  # one snapshot for the whole request (a reload may swap meanwhile)
    if loaded is None:
        raise HTTPException(status_code=503, detail="no model loaded")
    if params.variant is not None:
        arm = params.variant
        if arm not in variants:
            raise HTTPException(
                status_code=422, detail=f"unknown variant {arm!r}; known: {', '.join(sorted(variants))}"
            )
    else:
        arm = choose_arm(params.user_id, settings.default_variant)
        if arm not in variants:  # a misconfigured arm must not take the feed down
            log.error("arm %r has no ranking variant; using %r", arm, settings.default_variant)
            arm = settings.default_variant
    variant = variants[arm]

    degraded_reason: str | None = None
    try:
        state, trending, friends_bought = await asyncio.wait_for(
            _live_inputs(store, loaded, params.user_id, settings.trending_k, settings.friends_limit),
            timeout=settings.request_deadline_s,
        )
    except StoreUnavailable as exc:
        degraded_reason = "store_unavailable"
        log.warning("feed degraded for user %s: %s", params.user_id, exc)
    except TimeoutError:
        degraded_reason = "store_timeout"
        log.warning("feed degraded for user %s: store too slow", params.user_id)
    if degraded_reason is not None:
        state, trending, friends_bought = UserState(), [], {}
        metrics.degraded.labels(reason=degraded_reason).inc()

    ctx = context_from_state(params.user_id, state)
    entries = loaded.ranker.rank(
        ctx,
        variant,
        params.limit,
        exclude=set(params.exclude_ids),
        trending=trending or None,  # None → the ranker falls back to the run's popularity
        friends_bought=friends_bought,
    )
    items = [
        FeedItem(
            item_id=e.item_id,
            post_id=e.post_id,
            kol_id=e.kol_id,
            score=float(e.score),
            reasons=list(e.reasons),
            source=e.source,
        )
        for e in entries
    ]
    metrics.feed_responses.labels(arm=arm).inc()
    for item in items:
        metrics.feed_items.labels(source=item.source).inc()
    return FeedResponse(
        request_id=uuid.uuid4().hex,
        user_id=params.user_id,
        arm=arm,
        degraded=degraded_reason is not None,
        model_version=loaded.version,
        items=items,
    )

"""``GET /v1/feed``: one personalised page, answered even when the feature store is down.

Why the degraded path: the frontend must never show an error page because Redis hiccuped. The
three live store reads (user state, trending, friends' purchases) share a deadline; a read that fails
or is still running then is dropped and the page is built from the others plus the model (empty live
context, run popularity as trending), flagged ``degraded``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated, Any

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
    for bought in await store.bought_by(friends):
        for item in bought:
            counts[item] = counts.get(item, 0) + 1
    return counts


LiveInputs = tuple[UserState, list[tuple[int, float]], dict[int, int]]


async def _empty_trending() -> list[tuple[int, float]]:
    return []


async def _live_inputs(
    store: FeatureStore,
    loaded: LoadedModel,
    user_id: int,
    trending_k: int,
    friends_limit: int,
    deadline_s: float,
) -> tuple[LiveInputs, str | None]:
    """Read the three live sources concurrently, each cut off at the shared deadline.

    A source that fails (StoreUnavailable) or is still running at the deadline is dropped and the
    page is built from the others; the second value names why the page is degraded (None if not).
    Any other exception is a bug and propagates (500).
    """
    tasks: dict[str, asyncio.Task[Any]] = {
        "user_state": asyncio.ensure_future(store.user_state(user_id)),
        "trending": asyncio.ensure_future(
            store.trending(trending_k) if trending_k > 0 else _empty_trending()
        ),
        "friends_bought": asyncio.ensure_future(_friends_bought(store, loaded, user_id, friends_limit)),
    }
    try:
        await asyncio.wait(tasks.values(), timeout=deadline_s)
    finally:
        for task in tasks.values():
            if not task.done():
                task.cancel()
    got: dict[str, Any] = {}
    unavailable: list[str] = []
    slow: list[str] = []
    for name, task in tasks.items():
        if not task.done() or task.cancelled():
            slow.append(name)
            continue
        exc = task.exception()
        if isinstance(exc, StoreUnavailable):
            unavailable.append(name)
            log.warning("feed source %s failed for user %s: %s", name, user_id, exc)
        elif exc is not None:
            for other in tasks.values():  # retrieve the rest so asyncio does not warn
                if other is not task and other.done() and not other.cancelled():
                    other.exception()
            raise exc
        else:
            got[name] = task.result()
    if slow:
        log.warning("feed sources %s cut off at %.3fs for user %s", ",".join(slow), deadline_s, user_id)
    reason = "store_unavailable" if unavailable else "store_timeout" if slow else None
    inputs: LiveInputs = (
        got.get("user_state", UserState()),
        got.get("trending", []),
        got.get("friends_bought", {}),
    )
    return inputs, reason


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

    (state, trending, friends_bought), degraded_reason = await _live_inputs(
        store,
        loaded,
        params.user_id,
        settings.trending_k,
        settings.friends_limit,
        settings.request_deadline_s,
    )
    if degraded_reason is not None:
        metrics.degraded.labels(reason=degraded_reason).inc()

    ctx = context_from_state(params.user_id, state)
    # CPU-bound ranking runs in a worker thread so the event loop keeps admitting and shedding requests.
    entries = await asyncio.to_thread(
        loaded.ranker.rank,
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

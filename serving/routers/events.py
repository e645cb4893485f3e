"""``POST /v1/events``: what the user did with the page, recorded so the NEXT page reflects it.

Why through the store synchronously: a bought item must disappear and a hidden creator must drop
out on the very next request, so the batch is applied before we answer 202.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from fastapi import APIRouter, HTTPException, status

from features.base import StoreEvent
from features.errors import InvalidEventError, StoreUnavailable
from serving.deps import HolderDep, MetricsDep, StoreDep
from serving.lookups import item_categories
from serving.schemas import ErrorResponse, EventBatch, EventsAccepted
from serving.state import LoadedModel

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])


def to_store_events(batch: EventBatch, loaded: LoadedModel | None, now: float) -> list[StoreEvent]:
    """API events → StoreEvents, with the item's category filled in from the model when it knows it."""
    out: list[StoreEvent] = []
    ids = [e.item_id for e in batch.events]
    categories = item_categories(loaded.model, ids) if loaded is not None else [None] * len(ids)
    for e, category in zip(batch.events, categories, strict=True):
        out.append(
            StoreEvent(
                ts=e.ts if e.ts is not None else now,
                user_id=e.user_id,
                item_id=e.item_id,
                action=e.action,
                kol_id=e.kol_id,
                post_id=e.post_id,
                to_user_id=e.to_user_id,
                category=category,
                value=e.value if e.value is not None else 0.0,
                request_id=e.request_id,
            )
        )
    return out


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Record a batch of 1–1,000 user actions",
)
async def post_events(
    batch: EventBatch, store: StoreDep, holder: HolderDep, metrics: MetricsDep
) -> EventsAccepted:
    events = to_store_events(batch, holder.current, time.time())
    try:
        await store.record_events(events)
    except InvalidEventError as exc:
        raise HTTPException(status_code=422, detail=f"event batch rejected: {exc}") from None
    except StoreUnavailable as exc:
        log.warning("events not recorded: %s", exc)
        raise HTTPException(status_code=503, detail="feature store unavailable; retry later") from None
    for action, n in Counter(e.action for e in events).items():
        metrics.events.labels(action=action).inc(n)
    return EventsAccepted(accepted=len(events))

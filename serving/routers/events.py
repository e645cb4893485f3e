"""``POST /v1/events``: what the user did with the page, recorded so the NEXT page reflects it.

Why log first: the durable event log is the source of truth. A batch is answered 202 only after it
is appended and fsynced (the answer carries its sequence numbers), so a Redis outage or a crash of
this process loses no acknowledged event. Concurrent requests share one write and one fsync
(:mod:`features.group_commit`). It is then applied to the store at once when the store is
up and caught up (a bought item disappears and a hidden creator drops out on the very next request),
else the outbox replays it, in log order, when the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import Field, ValidationError

from features.base import FeatureStore, StoreEvent
from features.errors import InvalidEventError, StoreUnavailable
from features.eventlog import EventLogError
from features.group_commit import GroupCommitter
from serving.deps import StoreDep
from serving.metrics import ServiceMetrics
from serving.schemas import ErrorResponse, EventBatch, EventsAccepted
from serving.service_state import service_state
from serving.state import LoadedModel, ModelHolder

log = logging.getLogger(__name__)

JSON = b"application/json"


class EventsRoute(APIRoute):
    """``POST /v1/events`` without FastAPI's generic request handler for the common request.

    Why: single-event requests are the service's most frequent call and do little work of their
    own; FastAPI's generic handler (solving dependencies, parsing the JSON into dicts and then
    validating them, re-validating the returned model against ``response_model``) was ~40% of
    their CPU. A request with ``Content-Type: application/json`` whose body validates as an
    :class:`EventBatch` in one pass (pydantic's JSON mode) calls the same endpoint function
    directly and its answer is serialised once. Anything else (another content type, a body
    that does not validate, dependency overrides in tests) takes FastAPI's own handler, so
    every error and its body is FastAPI's. The OpenAPI document still comes from the endpoint's
    signature.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or _content_type(request.scope) != JSON:
                return await generic(request)
            try:
                batch = EventBatch.model_validate_json(await request.body())
            except ValidationError:
                return await generic(request)  # the body is cached: FastAPI re-reads and reports it
            st = service_state(request.app)
            env = EventsEnv(st.holder, st.metrics, st.committer)
            ack = await post_events(batch, st.require_store(), env)
            body = ack.model_dump_json()
            return Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")

        return handler


def _content_type(scope: Any) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return None


router = APIRouter(tags=["events"], route_class=EventsRoute)


def to_store_events(batch: EventBatch, loaded: LoadedModel | None, now: float) -> list[StoreEvent]:
    """API events → StoreEvents, with the item's category filled in from the model when it knows it."""
    out: list[StoreEvent] = []
    ids = [e.item_id for e in batch.events]
    categories = loaded.model.item_categories(ids) if loaded is not None else [None] * len(ids)
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


class EventsAcknowledged(EventsAccepted):
    """``accepted`` events are durable: in the event log (``first_seq..last_seq``) before this answer."""

    first_seq: int | None = Field(description="log sequence number of the first event (None: no log)")
    last_seq: int | None = Field(description="log sequence number of the last event (None: no log)")
    applied_to_store: bool = Field(
        description="reads already reflect the batch; if false the replayer applies it when the store answers"
    )


@dataclass(frozen=True, slots=True)
class EventsEnv:
    """What ``POST /v1/events`` reads from the app besides the store, as ONE dependency (FastAPI
    resolves each dependency separately, a measurable share of this small request's CPU). The
    store stays its own dependency, so tests can swap it with ``dependency_overrides[get_store]``."""

    holder: ModelHolder
    metrics: ServiceMetrics
    committer: GroupCommitter | None


async def get_events_env(request: Request) -> EventsEnv:
    st = service_state(request.app)
    return EventsEnv(st.holder, st.metrics, st.committer)


EventsEnvDep = Annotated[EventsEnv, Depends(get_events_env)]


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAcknowledged,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Record a batch of 1–1,000 user actions (durable in the event log when answered 202)",
)
async def post_events(
    batch: EventBatch,
    store: StoreDep,
    env: EventsEnvDep,
) -> EventsAcknowledged:
    events = to_store_events(batch, env.holder.current, time.time())
    if env.committer is None:
        ack = await _store_only(store, events)
    else:
        ack = await _logged(env.committer, store, events)
    for action, n in Counter(e.action for e in events).items():
        env.metrics.events.labels(action=action).inc(n)
    return ack


async def _logged(
    committer: GroupCommitter, store: FeatureStore, events: list[StoreEvent]
) -> EventsAcknowledged:
    """Append durably (fsync) first; the store is updated now if it can be, else by the replayer.

    Cancellation (request deadline, client gone) must not interrupt the append halfway between
    "written" and "answered": the append runs in a worker thread shielded from cancellation, so an
    event is either acknowledged and logged, or not acknowledged (and possibly logged: a retry may
    then duplicate it, which the store tolerates for set-valued state).
    """
    try:
        result = await asyncio.shield(committer.enqueue(events, store))
    except InvalidEventError as exc:
        raise HTTPException(status_code=422, detail=f"event batch rejected: {exc}") from None
    except (EventLogError, OSError) as exc:
        log.error("event log append failed: %s", exc)
        raise HTTPException(status_code=503, detail="event log unavailable; retry later") from None
    return EventsAcknowledged(
        accepted=result.accepted,
        first_seq=result.first_seq,
        last_seq=result.last_seq,
        applied_to_store=result.applied_to_store,
    )


async def _store_only(store: FeatureStore, events: list[StoreEvent]) -> EventsAcknowledged:
    """No event log configured: the store is the only copy, so a store outage is a 503."""
    try:
        await store.record_events(events)
    except InvalidEventError as exc:
        raise HTTPException(status_code=422, detail=f"event batch rejected: {exc}") from None
    except StoreUnavailable as exc:
        log.warning("events not recorded: %s", exc)
        raise HTTPException(status_code=503, detail="feature store unavailable; retry later") from None
    return EventsAcknowledged(accepted=len(events), first_seq=None, last_seq=None, applied_to_store=True)

"""The feed request path without HTTP: live inputs → arm → ranker → one page.

Why a module of its own: the router is a thin HTTP adapter, and benchmarks and the simulator build
pages the same way without importing a router. Failures are domain errors (:class:`FeedError`), which
the router turns into status codes.

Why the degraded path: the frontend must never show an error page because Redis hiccuped. The live
inputs (the user's state with the friends' purchases, one store read; trending, from a per-process
cache refreshed from the store at most every ``trending_cache_s``) share a deadline; an input that
fails or is still being read then is dropped and the page is built from the other plus the model
(empty live context, run popularity as trending), flagged ``degraded``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Mapping

from features.base import FeatureStore, UserState
from features.errors import StoreUnavailable
from recsys.experiments.config import ExperimentConfig
from recsys.ranking.context import UserContext
from recsys.ranking.variants import RankingVariant
from serving.arms import choose_arm
from serving.logs import current_request_id
from serving.metrics import ServiceMetrics
from serving.schemas import FeedPage, FeedQuery
from serving.settings import Settings
from serving.state import LoadedModel, ModelHolder
from serving.trending_cache import STORE_TIMEOUT, STORE_UNAVAILABLE, TrendingCache, TrendingRead

log = logging.getLogger(__name__)

RECENT_ITEMS = 50


class FeedError(RuntimeError):
    """A page cannot be built; ``status`` says which HTTP status the router answers with."""

    status = 500


class NoModelLoaded(FeedError):
    status = 503


class UnknownVariant(FeedError):
    status = 422


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


def count_friends_bought(bought_sets: list[set[int]]) -> dict[int, int]:
    """How many of the user's friends bought each item, from each friend's live purchase set."""
    counts: dict[int, int] = {}
    for bought in bought_sets:
        for item in bought:
            counts[item] = counts.get(item, 0) + 1
    return counts


LiveInputs = tuple[UserState, list[tuple[int, float]], dict[int, int]]


async def _live_inputs(
    store: FeatureStore,
    trending_cache: TrendingCache,
    loaded: LoadedModel,
    user_id: int,
    trending_k: int,
    friends_limit: int,
    deadline_s: float,
) -> tuple[LiveInputs, str | None]:
    """Read the live sources under one shared deadline: the user's state together with the friends'
    purchases (one store read, ``feed_state``), and trending (from the process's cache, which only
    reads the store once per ``trending_cache_s``; that read then runs alongside the user's).

    A source that fails (StoreUnavailable) or is still running at the deadline is dropped and the
    page is built from the other; the second value names why the page is degraded (None if not).
    Any other exception is a bug and propagates (500).
    """
    deadline = asyncio.get_running_loop().time() + deadline_s
    friends = loaded.model.friend_ids(user_id, friends_limit)
    trending = trending_cache.fresh(store, trending_k) if trending_k > 0 else []
    pending: asyncio.Future[TrendingRead] | None = None
    if trending is None:
        pending = asyncio.ensure_future(trending_cache.read(store, trending_k, deadline))
    state, friends_bought = UserState(), {}
    failures: list[str] = []
    try:
        try:
            async with asyncio.timeout_at(deadline):
                state, bought = await store.feed_state(user_id, friends)
            friends_bought = count_friends_bought(bought)
        except StoreUnavailable as exc:
            failures.append(STORE_UNAVAILABLE)
            log.warning("feed source feed_state (user, friends) failed for user %s: %s", user_id, exc)
        except TimeoutError:
            failures.append(STORE_TIMEOUT)
            log.warning("feed source feed_state cut off at %.3fs for user %s", deadline_s, user_id)
        if pending is not None:
            read = await pending  # bounded by the same deadline inside the cache
            trending = read.items
            if read.failure is not None:
                failures.append(read.failure)
                log.warning("feed source trending failed for user %s: %s", user_id, read.detail)
    finally:
        if pending is not None:
            if not pending.done():
                pending.cancel()  # only this request's wait: a shared refresh carries on
            elif not pending.cancelled():
                pending.exception()  # retrieved, so asyncio does not warn when a bug propagates
    reason = STORE_UNAVAILABLE if STORE_UNAVAILABLE in failures else STORE_TIMEOUT if failures else None
    return (state, trending or [], friends_bought), reason


async def get_feed(
    params: FeedQuery,
    settings: Settings,
    holder: ModelHolder,
    store: FeatureStore,
    variants: dict[str, RankingVariant],
    metrics: ServiceMetrics,
    trending_cache: TrendingCache | None = None,
    experiments: Mapping[str, ExperimentConfig] | None = None,
) -> FeedPage:
    """One page, without HTTP (serving/routers/feed.py serves it; benchmarks call it directly).

    Without ``trending_cache`` trending is read from the store on every call, as with
    ``trending_cache_s=0``."""
    if trending_cache is None:
        trending_cache = TrendingCache(0.0)
    loaded = holder.current  # one snapshot for the whole request (a reload may swap meanwhile)
    if loaded is None:
        raise NoModelLoaded("no model loaded")
    user_key = params.user_key  # the store, the arm hash and the ranker work on the int64 key
    if params.variant is not None:
        arm = params.variant
        if arm not in variants:
            raise UnknownVariant(f"unknown variant {arm!r}; known: {', '.join(sorted(variants))}")
    else:
        arm = choose_arm(user_key, settings.default_variant, experiments)
        if arm not in variants:  # a misconfigured arm must not take the feed down
            log.error("arm %r has no ranking variant; using %r", arm, settings.default_variant)
            arm = settings.default_variant
    variant = variants[arm]

    (state, trending, friends_bought), degraded_reason = await _live_inputs(
        store,
        trending_cache,
        loaded,
        user_key,
        settings.trending_k,
        settings.friends_limit,
        settings.request_deadline_s,
    )
    if degraded_reason is not None:
        metrics.degraded_for(degraded_reason).inc()

    ctx = context_from_state(user_key, state)
    rank = functools.partial(
        loaded.ranker.rank,
        ctx,
        variant,
        params.limit,
        exclude=set(params.exclude_ids),
        trending=trending or None,  # None → the ranker falls back to the run's popularity
        friends_bought=friends_bought,
    )
    # Inline on the event loop by default (a ~1 ms ranker costs less than the thread hop); in a worker
    # thread with rank_in_thread, so the loop keeps admitting and shedding during heavy rankers.
    entries = await asyncio.to_thread(rank) if settings.rank_in_thread else rank()
    metrics.feed_responses_for(arm).inc()
    per_source: dict[str, int] = {}
    for entry in entries:
        per_source[entry.source] = per_source.get(entry.source, 0) + 1
    for source, n in per_source.items():
        metrics.feed_items_for(source).inc(n)
    return FeedPage(
        request_id=current_request_id() or uuid.uuid4().hex,
        user_id=params.user_id,
        arm=arm,
        degraded=degraded_reason is not None,
        model_version=loaded.version,
        items=entries,
        labels=loaded.model.labels,
    )

"""One contract, every backend: the same tests run against memory://, one real Redis and a real
3-primary Redis Cluster (started by the session fixture ``redis_cluster_url``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from features.base import FeatureStore, StoreEvent, UserState
from features.decay import SPAN
from features.errors import InvalidEventError
from features.factory import open_store

DAY = 86_400.0
T0 = 1_700_000_000.0
# Generous timeouts: the shared test machine can be slow; the defaults are tested in test_store_urls.
SLOW_OK = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "pool_timeout": 2.0}


def _open(kind: str, request: pytest.FixtureRequest, prefix: str) -> FeatureStore:
    if kind == "memory":
        return open_store("memory://", prefix=prefix)
    if kind == "memory-sharded":  # trending partitioned as on a cluster, merged on read
        return open_store("memory://", prefix=prefix, trending_shards=4)
    if kind == "cluster":
        return open_store(request.getfixturevalue("redis_cluster_url"), prefix=prefix, **SLOW_OK)
    return open_store(request.getfixturevalue("redis_url"), prefix=prefix, **SLOW_OK)


def _kind(store: FeatureStore) -> str:
    if store.url.startswith("memory"):
        return "memory-sharded" if store.options.trending_shards > 1 else "memory"  # type: ignore[attr-defined]
    return "cluster" if store.url.startswith("redis+cluster") else "redis"


@pytest.fixture(
    params=[
        "memory",
        "memory-sharded",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[FeatureStore]:
    s = _open(request.param, request, f"kf:test:{uuid.uuid4().hex[:8]}:")
    yield s
    await s.clear()
    await s.close()


def ev(
    ts: float, user: int, item: int, action: str, kol: int | None = None, cat: str | None = None
) -> StoreEvent:
    return StoreEvent(ts=ts, user_id=user, item_id=item, action=action, kol_id=kol, category=cat)


async def test_store_satisfies_protocol_and_pings(store: FeatureStore) -> None:
    assert isinstance(store, FeatureStore)
    assert await store.ping() is True


async def test_unknown_user_gets_empty_state(store: FeatureStore) -> None:
    assert await store.user_state(424242, now=T0) == UserState()
    assert await store.user_states([], now=T0) == []


@pytest.mark.parametrize("action", ["click", "like", "save", "cart"])
async def test_engagement_actions_go_to_recent_clicks(store: FeatureStore, action: str) -> None:
    await store.record_events([ev(T0, 1, 10, action, kol=7)])
    state = await store.user_state(1, now=T0)
    assert state.recent_clicks == [10]
    assert state.recent_shares == [] and state.recent_buys == [] and state.bought == set()
    assert state.seen == set() and state.hidden_items == set()
    assert state.kol_affinity == pytest.approx(
        {7: {"click": 1.0, "like": 1.5, "save": 2.0, "cart": 3.0}[action]}
    )


async def test_share_buy_impression_hide(store: FeatureStore) -> None:
    await store.record_events(
        [
            ev(T0, 1, 20, "share", kol=5),
            ev(T0 + 1, 1, 21, "buy", kol=5),
            ev(T0 + 2, 1, 22, "impression", kol=6),
            ev(T0 + 3, 1, 23, "hide", kol=6),
            ev(T0 + 4, 1, 24, "hide"),  # hide without a KOL: only the item
        ]
    )
    s = await store.user_state(1, now=T0 + 4)
    assert s.recent_shares == [20]
    assert s.recent_buys == [21] and s.bought == {21}
    assert s.seen == {22}
    assert s.hidden_items == {23, 24} and s.hidden_kols == {6}
    assert s.recent_clicks == []
    # share 4 + buy 6 for KOL 5; impression 0 and hide -4 for KOL 6 (decay over 4 s is ~1e-5 relative).
    assert s.kol_affinity == pytest.approx({5: 10.0, 6: -4.0}, rel=1e-4)


async def test_affinity_decays_with_half_life(store: FeatureStore) -> None:
    week = 7 * DAY  # default affinity half-life
    await store.record_events([ev(T0, 1, 1, "buy", kol=3), ev(T0 + week, 1, 2, "click", kol=4)])
    s = await store.user_state(1, now=T0 + week)
    assert s.kol_affinity == pytest.approx({3: 3.0, 4: 1.0})
    later = await store.user_state(1, now=T0 + 3 * week)
    assert later.kol_affinity == pytest.approx({3: 0.75, 4: 0.25})


async def test_recent_lists_newest_first_deduplicated_and_bounded(store: FeatureStore) -> None:
    clicks = [ev(T0 + i, 1, 1000 + i, "click") for i in range(250)]
    clicks.append(ev(T0 + 300, 1, 1005, "like"))  # re-engaging moves an item to the front, once
    await store.record_events(clicks)
    await store.record_events([ev(T0 + 400, 1, 1010, "save")])  # and across batches
    s = await store.user_state(1, now=T0 + 400)
    assert len(s.recent_clicks) == 200
    assert s.recent_clicks[:3] == [1010, 1005, 1249]
    assert len(set(s.recent_clicks)) == 200
    assert 1000 not in s.recent_clicks and 1050 not in s.recent_clicks  # oldest fell off
    assert s.recent_clicks[-1] == 1052


async def test_out_of_order_event_does_not_jump_ahead(store: FeatureStore) -> None:
    await store.record_events([ev(T0 + 10, 1, 1, "click"), ev(T0 + 20, 1, 2, "click")])
    await store.record_events([ev(T0 + 5, 1, 1, "click")])  # late duplicate of an older click
    assert (await store.user_state(1, now=T0)).recent_clicks == [2, 1]


async def test_seen_keeps_latest_impressions(store: FeatureStore) -> None:
    await store.record_events([ev(T0 + i, 1, i, "impression") for i in range(600)])
    s = await store.user_state(1, now=T0)
    assert s.seen == set(range(100, 600))


async def test_batch_of_1000_events(store: FeatureStore) -> None:
    actions = ["click", "impression", "buy", "share", "like"]
    events = [ev(T0 + i, i % 10, i % 37, actions[i % 5], kol=i % 4) for i in range(1000)]
    await store.record_events(events)
    states = await store.user_states(list(range(10)), now=T0 + 999)
    for user, s in enumerate(states):
        mine = [e for e in events if e.user_id == user]
        latest: dict[int, float] = {}
        for e in mine:
            if e.action in ("click", "like"):
                latest[e.item_id] = e.ts
        assert s.recent_clicks == sorted(latest, key=lambda i: -latest[i])
        assert s.seen == {e.item_id for e in mine if e.action == "impression"}
        assert s.bought == {e.item_id for e in mine if e.action == "buy"}
        weights = {"click": 1.0, "like": 1.5, "buy": 6.0, "share": 4.0, "impression": 0.0}
        expected: dict[int, float] = {}
        for e in mine:
            if weights[e.action] and e.kol_id is not None:
                expected[e.kol_id] = expected.get(e.kol_id, 0.0) + weights[e.action]
        # 1000 s of a 7-day half-life decays by at most 0.12 %.
        assert s.kol_affinity == pytest.approx(expected, rel=2e-3)


async def test_user_states_batch_equals_individual_reads(store: FeatureStore) -> None:
    await store.record_events(
        [
            ev(T0 + i, i % 5, i, ["click", "share", "buy", "hide", "impression"][i % 5], kol=i % 3)
            for i in range(60)
        ]
    )
    ids = [3, 99, 0, 4, 3, 1, 2]
    batch = await store.user_states(ids, now=T0 + 100)
    singles = [await store.user_state(u, now=T0 + 100) for u in ids]
    assert batch == singles
    assert batch[1] == UserState()


async def test_bought_by_equals_the_bought_sets_of_user_states(store: FeatureStore) -> None:
    await store.record_events(
        [ev(T0 + i, i % 4, 200 + i % 7, ["buy", "click", "buy", "hide"][i % 4]) for i in range(40)]
    )
    ids = [0, 1, 2, 3, 42, 0]
    states = await store.user_states(ids, now=T0 + 100)
    bought = await store.bought_by(ids)
    assert bought == [s.bought for s in states]
    assert bought[0] and bought[4] == set() and await store.bought_by([]) == []


async def test_feed_state_is_user_state_plus_friends_purchases(store: FeatureStore) -> None:
    await store.record_events(
        [
            ev(T0, 1, 10, "click", kol=4),
            ev(T0 + 1, 1, 11, "buy", kol=4),
            ev(T0 + 2, 1, 12, "hide", kol=5),
            ev(T0 + 3, 2, 30, "buy"),
            ev(T0 + 4, 2, 31, "buy"),
            ev(T0 + 5, 3, 30, "buy"),
            ev(T0 + 6, 3, 32, "click"),  # not a purchase
        ]
    )
    friends = [2, 99, 3, 2]
    state, bought = await store.feed_state(1, friends, now=T0 + 10)
    assert state == await store.user_state(1, now=T0 + 10)
    assert bought == await store.bought_by(friends)
    assert bought == [{30, 31}, set(), {30}, {30, 31}]
    assert state.recent_clicks == [10] and state.bought == {11} and state.hidden_kols == {5}
    assert state.kol_affinity == pytest.approx({4: 7.0, 5: -4.0}, rel=1e-4)
    # the next read reflects a write at once, on both sides
    await store.record_events([ev(T0 + 20, 3, 33, "buy"), ev(T0 + 20, 1, 40, "hide", kol=6)])
    state, bought = await store.feed_state(1, [3], now=T0 + 20)
    assert bought == [{30, 33}]
    assert state.hidden_items == {12, 40} and state.hidden_kols == {5, 6}
    assert await store.feed_state(424242, [], now=T0) == (UserState(), [])


async def test_events_visible_to_the_next_read(store: FeatureStore) -> None:
    for i in range(5):
        await store.record_events([ev(T0 + i, 8, 100 + i, "click", cat="home")])
        assert (await store.user_state(8, now=T0 + i)).recent_clicks[0] == 100 + i
        assert (await store.trending(1, now=T0 + i))[0][0] in range(100, 101 + i)


async def test_invalid_action_rejects_whole_batch(store: FeatureStore) -> None:
    with pytest.raises(InvalidEventError, match="'wave'"):
        await store.record_events([ev(T0, 1, 1, "click"), ev(T0, 1, 2, "wave")])
    assert await store.user_state(1, now=T0) == UserState()


async def test_trending_decay_and_categories(store: FeatureStore) -> None:
    day = DAY  # default trending half-life
    old_burst = [ev(T0, u, 1, "click", cat="beauty") for u in range(10)]
    await store.record_events(old_burst)
    await store.record_events(
        [ev(T0 + 3600, 50, 2, "click", cat="home"), ev(T0, 51, 3, "impression", cat="home")]
    )
    top_then = await store.trending(5, now=T0 + 3600)
    assert [i for i, _ in top_then] == [1, 2]  # impressions are not engagement
    assert top_then[0][1] == pytest.approx(10 * 2 ** (-1 / 24))

    fresh = [ev(T0 + 5 * day, u, 4, "buy", cat="home") for u in range(1)]  # one buy = 6 points
    await store.record_events(fresh)
    top_now = await store.trending(3, now=T0 + 5 * day)
    assert [i for i, _ in top_now] == [4, 1, 2]
    assert [s for _, s in top_now] == pytest.approx([6.0, 10 / 32, 2 ** (-5 + 1 / 24)])
    assert [i for i, _ in await store.trending(5, category="home", now=T0 + 5 * day)] == [4, 2]
    assert [i for i, _ in await store.trending(5, category="beauty", now=T0 + 5 * day)] == [1]
    assert await store.trending(5, category="toys", now=T0) == []
    assert await store.trending(0, now=T0) == []
    assert len(await store.trending(1, now=T0 + 5 * day)) == 1


async def test_hide_does_not_trend_and_negative_affinity(store: FeatureStore) -> None:
    await store.record_events([ev(T0, 1, 9, "hide", kol=2, cat="food")])
    assert await store.trending(5, now=T0) == []
    assert (await store.user_state(1, now=T0)).kol_affinity == pytest.approx({2: -4.0})


async def test_decayed_scores_survive_a_generation_boundary(store: FeatureStore) -> None:
    generation = SPAN * DAY  # trending generations: SPAN half-lives
    boundary = (int(T0 // generation) + 1) * generation
    await store.record_events([ev(boundary - 3600, 1, 5, "click", kol=1)])
    top = await store.trending(1, now=boundary + 3600)
    assert top == [(5, pytest.approx(2 ** (-2 / 24)))]
    # Far beyond SPAN half-lives a contribution is gone (it would be below 2**-64 anyway).
    assert await store.trending(1, now=boundary + 2 * generation) == []


async def test_clear_leaves_other_prefixes_untouched(
    store: FeatureStore, request: pytest.FixtureRequest
) -> None:
    other = _open(_kind(store), request, f"kf:other:{uuid.uuid4().hex[:8]}:")
    try:
        both = [ev(T0, 1, 1, "click", cat="beauty"), ev(T0, 1, 2, "buy", kol=3)]
        await store.record_events(both)
        await other.record_events(both)
        await store.clear()
        assert await store.user_state(1, now=T0) == UserState()
        assert await store.trending(5, now=T0) == []
        kept = await other.user_state(1, now=T0)
        assert kept.recent_clicks == [1] and kept.bought == {2}
        assert [i for i, _ in await other.trending(5, now=T0)] == [2, 1]
    finally:
        await other.clear()
        await other.close()


@pytest.mark.redis
async def test_redis_feed_state_reloads_its_script_after_a_flush(request: pytest.FixtureRequest) -> None:
    """A restarted Redis has no scripts cached: the read loads its script again instead of failing."""
    import redis.asyncio as aioredis

    store = _open("redis", request, f"kf:test:{uuid.uuid4().hex[:8]}:")
    admin = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        await store.record_events([ev(T0, 1, 10, "click", kol=4), ev(T0 + 1, 2, 30, "buy")])
        before = await store.feed_state(1, [2], now=T0 + 5)
        await admin.script_flush()
        assert await store.feed_state(1, [2], now=T0 + 5) == before
        assert before[0].recent_clicks == [10] and before[1] == [{30}]
    finally:
        await store.clear()
        await store.close()
        await admin.aclose()


async def test_announcements_are_replaced_read_back_and_survive_clear(store: FeatureStore) -> None:
    assert await store.announced("served-run") is None
    await store.announce("served-run", '{"run_id": "a"}')
    await store.announce("served-run", '{"run_id": "b"}')
    await store.record_events([ev(T0, 1, 1, "click")])
    await store.clear()  # clears what the event log rebuilds, not what the service announced
    assert await store.announced("served-run") == '{"run_id": "b"}'
    assert await store.user_state(1, now=T0) == UserState()

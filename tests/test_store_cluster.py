"""redis+cluster://: URL parsing, the per-user slot layout, and what one dead primary does.

The contract itself runs against the cluster in test_store_contract.py (session cluster). The tests
here that kill a primary start their own 3-primary cluster, so the session one stays whole.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot

from features.base import StoreEvent
from features.errors import StoreConfigError, StoreUnavailable
from features.factory import open_store
from features.layout import KeyLayout, user_read_keys
from features.redis_cluster_store import RedisClusterStore
from features.urls import parse_store_url
from kolfeed.bench.local_cluster import LocalRedisCluster
from serving.app import create_app
from serving.service_state import service_state
from tests.ranking_fixtures import make_tiny_run
from tests.service_harness import make_settings, running

REPO = Path(__file__).resolve().parents[1]
SLOW_OK = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
T0 = 1_700_000_000.0


def test_cluster_url_lists_every_start_up_node_and_hides_the_password() -> None:
    parsed = parse_store_url("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001,node3/?prefix=kf:c:")
    assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("node3", 6379))
    assert parsed.password == "s3cret" and parsed.options == {"prefix": "kf:c:"}
    assert "s3cret" not in repr(parsed)
    store = open_store("redis+cluster://:s3cret@127.0.0.1:7000")
    assert isinstance(store, RedisClusterStore)
    assert store.url == "redis+cluster://:***@127.0.0.1:7000" and "s3cret" not in repr(store)
    assert store.options.trending_shards == 16  # spread over the nodes by default
    assert open_store("redis+cluster://h:1", trending_shards=3).options.trending_shards == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:1,h:notaport", "bad port 'notaport' of node 'h'"),
        ("redis+cluster://h:1,,h:2", "has an empty node"),
        ("redis+cluster://h:1/3", "has no databases"),
        ("redis+cluster://h:1?prefix=kf:{x}:", "braces are not allowed"),
        ("redis+cluster://h:1?trending_shards=0", "trending_shards"),
    ],
)
def test_bad_cluster_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        open_store(url)


def test_every_key_of_one_user_is_in_one_slot() -> None:
    keys = KeyLayout("kf:", trending_shards=16)
    for user in (0, 7, 123_456_789, -4_611_686_018_427_387_904):
        own = [*user_read_keys(keys, user, 3), keys.user(user, "buys")]
        assert len({key_slot(k.encode()) for k in own}) == 1, own
    partitions = keys.trending_partitions("beauty", 5)
    assert len({key_slot(k.encode()) for k in partitions}) > 8  # spread, not one hot slot
    assert keys.trending(None, 5, keys.trending_shard(35)) == "kf:trend:{t3}:all:5"
    assert KeyLayout("kf:").trending(None, 5) == "kf:trend:all:5"  # unsharded names unchanged


# --------------------------------------------------------------------------------------------------
# one primary dies
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster.start(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


def users_by_node(store: RedisClusterStore, users: range) -> dict[int, list[int]]:
    """Port of the primary holding each user's keys -> those users (needs an initialized client)."""
    out: dict[int, list[int]] = {}
    for user in users:
        node = store._redis.get_node_from_key(store._bought_key(user))
        out.setdefault(int(node.port), []).append(user)
    return out


@pytest.fixture
async def cluster_store(own_cluster: LocalRedisCluster) -> AsyncIterator[RedisClusterStore]:
    store = open_store(own_cluster.url, prefix=f"kf:test:{uuid.uuid4().hex[:8]}:", **SLOW_OK)
    assert isinstance(store, RedisClusterStore)
    try:
        yield store
    finally:
        await store.close()


async def test_a_dead_primary_fails_only_the_reads_of_its_users(
    own_cluster: LocalRedisCluster, cluster_store: RedisClusterStore
) -> None:
    store = cluster_store
    users = range(1, 61)
    await store.record_events(
        [StoreEvent(T0 + u, u, 1000 + u, "buy", kol_id=5, category="home") for u in users]
    )
    placement = users_by_node(store, users)
    assert len(placement) == 3
    dead_port = own_cluster.kill(0)
    dead, alive = placement[dead_port], [u for p, us in placement.items() if p != dead_port for u in us]

    for user in alive[:10]:
        state, friends = await store.feed_state(user, [dead[0], alive[-1]], now=T0 + 100)
        assert state.bought == {1000 + user}
        assert friends == [set(), {1000 + alive[-1]}]  # the dead shard's friend only loses social proof
    for user in dead[:3]:
        with pytest.raises(StoreUnavailable):
            await store.feed_state(user, [alive[0]], now=T0 + 100)
    top = await store.trending(100, now=T0 + 100)
    assert top and {item for item, _ in top} < {1000 + u for u in users}  # the live partitions
    assert await store.ping() is True  # readiness stays up: the other primaries answer

    own_cluster.restart(0)  # same slots, no data (no persistence): its users start over
    deadline = time.monotonic() + 20
    while True:
        try:
            state, _ = await store.feed_state(dead[0], [], now=T0 + 100)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the restarted primary never answered again"
            time.sleep(0.2)
    assert state.bought == set()
    state, _ = await store.feed_state(alive[0], [], now=T0 + 100)
    assert state.bought == {1000 + alive[0]}


async def test_the_feed_answers_every_user_while_a_primary_is_dead(
    own_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    """No 5xx: users on the dead shard get a degraded page, the others a full one; events are 202."""
    runs = tmp_path / "runs"
    make_tiny_run(runs / "run1")
    settings = make_settings(
        runs,
        REPO / "configs" / "ranking",
        store_url=own_cluster.url + "?socket_timeout=1&socket_connect_timeout=1",
        event_log_dir=tmp_path / "log",
        trending_cache_s=0,
        trending_stale_s=0,
    )
    app = create_app(settings)
    async with running(app) as client:
        store = service_state(app).store
        assert isinstance(store, RedisClusterStore)
        await store._initialized()
        placement = users_by_node(store, range(1, 80))
        dead_port = own_cluster.kill(1)
        dead = placement[dead_port][:4]
        alive = [u for p, us in placement.items() if p != dead_port for u in us][:8]
        pages = {u: await _feed(client, u) for u in dead + alive}
        assert all(pages[u]["degraded"] for u in dead)
        assert not any(pages[u]["degraded"] for u in alive)
        assert all(pages[u]["items"] for u in dead + alive)
        events = [{"user_id": u, "item_id": 1001, "action": "click"} for u in dead + alive]
        r = await client.post("/v1/events", json={"events": events})
        assert r.status_code == 202, r.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text


async def _feed(client: httpx.AsyncClient, user: int) -> dict[str, object]:
    r = await client.get("/v1/feed", params={"user_id": user})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body

"""Reliability pieces in-process (fast): the limiter and deadline, a slow store source cut off, events
accepted into the log while the store is down and replayed after, and the store rebuilt when it
comes back empty."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from features.base import StoreEvent, UserState
from features.errors import StoreUnavailable
from features.eventlog import LogReader
from features.memory import MemoryStore
from serving.app import create_app
from serving.limits import ConcurrencyLimiter, LimitConfig, LimitMiddleware
from serving.metrics import Receive, Scope, Send
from serving.service_state import service_state
from serving.settings import Settings
from tests.ranking_fixtures import Tiny, make_tiny_run

RANKING = Path(__file__).resolve().parents[1] / "configs" / "ranking"


# ------------------------------------------------------------------ limiter and deadline
def slow_app(delay_s: float) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def limited(delay_s: float, **config: Any) -> httpx.AsyncClient:
    cfg = {
        "max_inflight": 2,
        "max_waiting": 100,
        "max_queue_wait_s": 0.02,
        "request_timeout_s": 5.0,
        **config,
    }
    app = LimitMiddleware(slow_app(delay_s), ConcurrencyLimiter(LimitConfig(**cfg)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_excess_requests_get_503_with_retry_after() -> None:
    async with limited(0.3) as client:
        replies = await asyncio.gather(*(client.get("/v1/feed") for _ in range(6)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 503, 503, 503, 503]
    shed = [r for r in replies if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "overloaded" in r.json()["detail"] for r in shed)


async def test_full_wait_queue_sheds_without_waiting() -> None:
    async with limited(0.3, max_inflight=1, max_waiting=0, max_queue_wait_s=10.0) as client:
        replies = await asyncio.gather(*(client.get("/x") for _ in range(3)))
    assert sorted(r.status_code for r in replies) == [200, 503, 503]
    assert any("queue full" in r.json()["detail"] for r in replies if r.status_code == 503)


async def test_probes_bypass_the_limiter_and_deadline_cuts_off() -> None:
    async with limited(0.5, max_inflight=1, request_timeout_s=0.05) as client:
        cut = await client.get("/v1/feed")
        probe = await client.get("/livez")  # no deadline for probes
    assert cut.status_code == 503 and "deadline" in cut.json()["detail"]
    assert probe.status_code == 200


# ------------------------------------------------------------------ the service with a flaky store
class FlakyStore(MemoryStore):
    """A real memory store that can be switched down, or made to hang on trending reads."""

    down = False
    hang_trending = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("connection refused")

    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        self._check()
        await super().record_events(events)

    async def user_state(self, user_id: int, now: float | None = None) -> UserState:
        self._check()
        return await super().user_state(user_id, now)

    async def user_states(self, user_ids: Sequence[int], now: float | None = None) -> list[UserState]:
        self._check()
        return await super().user_states(user_ids, now)

    async def bought_by(self, user_ids: Sequence[int]) -> list[set[int]]:
        self._check()
        return await super().bought_by(user_ids)

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        self._check()
        return await super().feed_state(user_id, friend_ids, now)

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        self._check()
        if self.hang_trending:
            await asyncio.sleep(30)
        return await super().trending(k, category, now)

    async def ping(self) -> bool:
        return not self.down


@asynccontextmanager
async def service(
    tmp_path: Path, **changes: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, FlakyStore]]:
    runs = tmp_path / "runs"
    make_tiny_run(runs / "run1")
    settings = Settings(
        runs_root=runs,
        ranking_dir=RANKING,
        event_log_dir=tmp_path / "eventlog",
        replay_interval_s=0.05,
        request_deadline_s=0.2,
        **changes,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store = FlakyStore()
        service_state(app).store = store  # the outbox and the request path share it
        service_state(app).outbox.store = store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kolfeed.test") as client:
            yield app, client, store


async def wait_until_synced(client: httpx.AsyncClient, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        body: dict[str, Any] = (await client.get("/readyz")).json()
        log_state = body["event_log"]
        if log_state["pending"] == 0 and log_state["store_synced"]:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"store never caught up: {body}")
        await asyncio.sleep(0.05)


async def test_slow_source_is_cut_off_and_the_rest_is_used(tmp_path: Path) -> None:
    async with service(tmp_path) as (_app, client, store):
        await wait_until_synced(client)
        r = await client.post(
            "/v1/events", json={"events": [{"user_id": 1, "item_id": Tiny.ANN_ITEM, "action": "buy"}]}
        )
        assert r.status_code == 202
        store.hang_trending = True
        body = (await client.get("/v1/feed", params={"user_id": 1, "limit": 20})).json()
        assert body["degraded"] is True and body["items"]
        assert str(Tiny.ANN_ITEM) not in [e["item_id"] for e in body["items"]]  # user state still used
        metrics = (await client.get("/metrics")).text
        assert 'kolfeed_feed_degraded_total{reason="store_timeout"} 1.0' in metrics


async def test_events_accepted_while_the_store_is_down_then_replayed(tmp_path: Path) -> None:
    async with service(tmp_path) as (_app, client, store):
        await wait_until_synced(client)
        store.down = True
        acks = []
        for item in (1010, 1011, 1012):
            r = await client.post(
                "/v1/events", json={"events": [{"user_id": 4, "item_id": item, "action": "buy"}]}
            )
            assert r.status_code == 202, r.text
            acks.append(r.json())
        assert [a["first_seq"] for a in acks] == [1, 2, 3]  # marker events are not logged
        assert not any(a["applied_to_store"] for a in acks)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["degraded"] is True
        assert ready.json()["event_log"]["pending"] == 3
        feed = (await client.get("/v1/feed", params={"user_id": 4})).json()
        assert feed["degraded"] is True
        store.down = False
        await wait_until_synced(client)
        assert (await store.user_state(4)).bought == {1010, 1011, 1012}


async def test_store_that_comes_back_empty_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    async with service(tmp_path) as (app, client, store):
        await wait_until_synced(client)
        events = [{"user_id": 5, "item_id": 1000 + i, "action": "impression"} for i in range(7)]
        assert (await client.post("/v1/events", json={"events": events})).status_code == 202
        assert len((await store.user_state(5)).seen) == 7
        await store.clear()  # what a Redis restart without persistence looks like
        before = service_state(app).outbox.status.rebuilds
        for _ in range(200):  # the outbox checks the marker every replay interval (50 ms here)
            if service_state(app).outbox.status.rebuilds > before:
                break
            await asyncio.sleep(0.05)
        body = await wait_until_synced(client)
        assert service_state(app).outbox.status.rebuilds == before + 1
        assert body["event_log"]["store_rebuilds"] == before + 1
        assert (await store.user_state(5)).seen == {1000 + i for i in range(7)}
    # the log is the source of truth: all 7 events there, in order
    logged = [ev.item_id for _, ev in LogReader(tmp_path / "eventlog").iter_events()]
    assert logged == [1000 + i for i in range(7)]


@pytest.mark.parametrize("path", ["/v1/feed?user_id=1", "/livez"])
async def test_limiter_metrics_are_exported(tmp_path: Path, path: str) -> None:
    async with service(tmp_path) as (_app, client, _store):
        assert (await client.get(path)).status_code == 200
        text = (await client.get("/metrics")).text
        for name in ("kolfeed_inflight_requests", "kolfeed_shed_requests_total", "kolfeed_event_log_pending"):
            assert name in text


async def test_group_commit_counters_are_exported(tmp_path: Path) -> None:
    async with service(tmp_path) as (_app, client, _store):
        batch = {"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]}
        replies = await asyncio.gather(*(client.post("/v1/events", json=batch) for _ in range(8)))
        assert [r.status_code for r in replies] == [202] * 8
        text = (await client.get("/metrics")).text
        groups = re.search(r"^kolfeed_event_log_group_commits_total ([\d.]+)$", text, flags=re.M)
        requests = re.search(r"^kolfeed_event_log_group_commit_requests_total ([\d.]+)$", text, flags=re.M)
        assert groups is not None and requests is not None
        assert float(requests.group(1)) == 8 and 1 <= float(groups.group(1)) <= 8


async def test_the_service_records_its_replica_id_in_a_new_event_log(tmp_path: Path) -> None:
    from features.eventlog import read_replica
    from serving.runner import ServeError, check_event_log_free

    async with service(tmp_path, replica="eu-1") as (app, client, _store):
        assert service_state(app).event_log.replica == "eu-1"
        batch = {"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]}
        assert (await client.post("/v1/events", json=batch)).status_code == 202
    assert read_replica(tmp_path / "eventlog") == "eu-1"
    other = Settings(event_log_dir=tmp_path / "eventlog", replica="us-2")
    with pytest.raises(ServeError, match="belongs to replica 'eu-1'"):
        check_event_log_free(other)  # `kolfeed serve --replica us-2` on eu-1's log: refused up front
    with pytest.raises(ValidationError):
        Settings(replica="not/a/host")

"""The feed service end to end: HTTP in, ranker and feature store behind, on the tiny known world.

The app runs with its real lifespan (model + variants + memory:// store), driven by httpx over ASGI;
dependencies are swapped with ``app.dependency_overrides`` (a real MemoryStore subclass, not a mock).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from features.base import StoreEvent, UserState
from features.errors import StoreUnavailable
from features.memory import MemoryStore
from recsys.ranking.context import FeedEntry
from serving.app import create_app
from serving.deps import get_store
from serving.schemas import FeedItem, FeedPage, FeedResponse
from serving.service_state import service_state
from serving.settings import Settings
from tests.ranking_fixtures import (
    LOOSE,
    Tiny,
    category_of,
    loose_ranking_dir,
    make_tiny_run,
    tiny_runs,
)
from tests.service_harness import TOKEN, auth, feed, make_settings, post_events, running
from tests.store_doubles import TrendingStore


@pytest.fixture
def ranking_dir(tmp_path: Path) -> Path:
    return loose_ranking_dir(tmp_path / "ranking")


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tiny_runs(tmp_path / "runs", 1)


@pytest.fixture
def settings(runs_root: Path, ranking_dir: Path) -> Settings:
    return make_settings(runs_root, ranking_dir)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with running(application) as client:
        application.state.test_client = client
        yield application


@pytest.fixture
def client(app: FastAPI) -> httpx.AsyncClient:
    c: httpx.AsyncClient = app.state.test_client
    return c


def items_of(body: dict[str, Any]) -> list[int]:
    """The page's item ids; the tiny world's ids are integers, which responses spell as strings."""
    ids = [e["item_id"] for e in body["items"]]
    assert all(isinstance(i, str) for i in ids), ids
    return [int(i) for i in ids]


# ------------------------------------------------------------------ feed shape and validation
async def test_feed_body_is_what_the_response_model_documents(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/feed", params={"user_id": Tiny.USER, "limit": 10})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    page = FeedResponse.model_validate_json(r.content)  # strict shape: no field missing or extra
    assert page.model_dump(mode="json") == r.json() and len(page.items) == 10
    spec = (await client.get("/openapi.json")).json()["paths"]["/v1/feed"]["get"]
    assert spec["operationId"] == "get_feed_v1_feed_get"
    assert spec["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedResponse"
    }


def test_feed_page_json_matches_pydantic_for_numpy_values_and_nan() -> None:
    entries = [
        FeedEntry(np.int64(5), None, np.int32(2), np.float32(0.5), ["a", "b"], "ann"),
        FeedEntry(6, 7, 3, float("nan"), [], "popular"),
    ]
    labels = {"item": {-9: "SKU-9"}, "kol": {3: "never-used"}, "post": {-7: "post-7"}}
    entries.append(FeedEntry(-9, -7, None, 1.0, [], "ann"))
    page = FeedPage("ab" * 16, "1", "default", True, 3, entries, labels)
    expected = FeedResponse(
        request_id="ab" * 16,
        user_id="1",
        arm="default",
        degraded=True,
        model_version=3,
        items=[
            FeedItem(item_id="5", post_id=None, kol_id="2", score=0.5, reasons=["a", "b"], source="ann"),
            FeedItem(
                item_id="6",
                post_id="7",
                kol_id="never-used",
                score=float("nan"),
                reasons=[],
                source="popular",
            ),
            FeedItem(item_id="SKU-9", post_id="post-7", kol_id=None, score=1.0, reasons=[], source="ann"),
        ],
    )
    assert json.loads(page.json_bytes()) == json.loads(expected.model_dump_json())  # NaN → null in both


async def test_feed_shape(client: httpx.AsyncClient) -> None:
    body = await feed(client, Tiny.USER, limit=10)
    assert set(body) == {"request_id", "user_id", "arm", "degraded", "model_version", "items"}
    assert len(body["request_id"]) == 32 and int(body["request_id"], 16) >= 0
    assert body["user_id"] == str(Tiny.USER) and body["arm"] == "default" and body["degraded"] is False
    assert body["model_version"] == 1
    assert len(body["items"]) == 10
    for e in body["items"]:
        assert set(e) == {"item_id", "post_id", "kol_id", "score", "reasons", "source"}
        assert e["reasons"] and all(isinstance(r, str) for r in e["reasons"])
    assert len(set(items_of(body))) == 10
    assert Tiny.OUT_OF_STOCK_ITEM not in items_of(body)
    # the default page size is 20 (the loose variant has no diversity caps to shrink it)
    assert len((await feed(client, Tiny.USER, variant=LOOSE))["items"]) == 20
    again = await feed(client, Tiny.USER, limit=10)
    assert again["request_id"] != body["request_id"]


@pytest.mark.parametrize("limit, status", [(0, 422), (101, 422), (-1, 422), ("x", 422), (1, 200), (100, 200)])
async def test_limit_bounds(client: httpx.AsyncClient, limit: Any, status: int) -> None:
    r = await client.get("/v1/feed", params={"user_id": Tiny.USER, "limit": limit, "variant": LOOSE})
    assert r.status_code == status, r.text
    if status == 422:
        assert "limit" in r.json()["detail"]
    else:
        assert len(r.json()["items"]) == min(limit, Tiny.N_ITEMS - 1)


async def test_unknown_query_parameter_is_named(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/feed", params={"user_id": 1, "limt": 5})
    assert r.status_code == 422
    assert "limt" in r.json()["detail"] and "unknown parameter" in r.json()["detail"]


@pytest.mark.parametrize(
    "params, needle",
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 129}, "user_id"),
        ({"user_id": "a\tb"}, "user_id"),
        ({"user_id": 1, "exclude": "1," + "x" * 129}, "exclude"),
        ({"user_id": 1, "variant": "nope"}, "unknown variant"),
    ],
)
async def test_bad_feed_requests_are_4xx(
    client: httpx.AsyncClient, params: dict[str, Any], needle: str
) -> None:
    r = await client.get("/v1/feed", params=params)
    assert r.status_code == 422
    assert needle in r.json()["detail"]


async def test_exclude_and_variant(client: httpx.AsyncClient) -> None:
    first = items_of(await feed(client, Tiny.USER, limit=5))
    body = await feed(client, Tiny.USER, limit=5, exclude=",".join(map(str, first)), variant="no_kol")
    assert body["arm"] == "no_kol"
    assert not set(first) & set(items_of(body))


async def test_cold_start_user_gets_a_feed(client: httpx.AsyncClient) -> None:
    for user in (Tiny.UNKNOWN_USER, 123_456_789):
        body = await feed(client, user, limit=10)
        assert body["degraded"] is False and len(body["items"]) == 10


# ------------------------------------------------------------------ sources and reasons end to end
async def test_each_source_and_reason_is_visible(client: httpx.AsyncClient) -> None:
    # other users make item 1007 (KOL 11, no other source) trending: recorded via the API, read from the store
    await post_events(client, *[{"user_id": u, "item_id": 1007, "action": "buy"} for u in (4, 5, 6)])
    body = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
    by_item = {int(e["item_id"]): e for e in body["items"]}
    sources = {e["source"] for e in body["items"]}
    assert {
        "followed_kol",
        "kol_affinity",
        "friends_bought",
        "ann",
        "trending",
        "explore",
        "popular",
    } <= sources
    assert "2 friends bought this" in by_item[Tiny.FRIENDS_ITEM]["reasons"]
    assert "1 friend bought this" in by_item[Tiny.ONE_FRIEND_ITEM]["reasons"]
    assert (
        f"trending in {category_of(1007)}" in by_item[1007]["reasons"]
        and by_item[1007]["source"] == "trending"
    )
    assert by_item[Tiny.ANN_ITEM]["source"] == "ann"
    assert "similar to items you liked" in by_item[Tiny.ANN_ITEM]["reasons"]
    for e in body["items"]:
        assert ("because you follow @kol_10" in e["reasons"]) == (e["kol_id"] == str(Tiny.FOLLOWED_KOL))
    explore = [e for e in body["items"] if e["source"] == "explore"]
    assert len(explore) == 1 and explore[0]["kol_id"] == str(Tiny.NEW_KOL)
    assert explore[0]["reasons"][0] == "new creator for you"
    assert any("you often engage with @kol_13" in e["reasons"] for e in body["items"])
    assert all(e["reasons"] == ["popular right now"] for e in body["items"] if e["source"] == "popular")


async def test_live_friend_purchase_becomes_social_proof(client: httpx.AsyncClient) -> None:
    item = 1020  # nobody bought it in the run
    before = {int(e["item_id"]): e for e in (await feed(client, Tiny.USER, limit=40, variant=LOOSE))["items"]}
    assert not any("friend" in r for r in before.get(item, {"reasons": []})["reasons"])
    r = await post_events(client, *[{"user_id": f, "item_id": item, "action": "buy"} for f in Tiny.FRIENDS])
    assert r.status_code == 202
    after = {int(e["item_id"]): e for e in (await feed(client, Tiny.USER, limit=40, variant=LOOSE))["items"]}
    assert "2 friends bought this" in after[item]["reasons"]


async def test_recent_clicks_drive_similar_items_for_a_new_user(client: httpx.AsyncClient) -> None:
    user = 5_000
    before = await feed(client, user, limit=10, variant=LOOSE)
    assert not any(e["source"] == "similar" for e in before["items"])
    await post_events(client, {"user_id": user, "item_id": Tiny.ANN_ITEM, "action": "click"})
    after = await feed(client, user, limit=10, variant=LOOSE)
    assert any(e["source"] == "similar" for e in after["items"])


# ------------------------------------------------------------------ event → feed loop
async def test_buy_removes_the_item(client: httpx.AsyncClient) -> None:
    assert Tiny.ANN_ITEM in items_of(await feed(client, Tiny.USER))
    r = await post_events(
        client, {"user_id": Tiny.USER, "item_id": Tiny.ANN_ITEM, "action": "buy", "value": 9.5}
    )
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert Tiny.ANN_ITEM not in items_of(await feed(client, Tiny.USER, limit=100))


async def test_hidden_kol_posts_drop(client: httpx.AsyncClient) -> None:
    body = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
    assert any(e["kol_id"] == str(Tiny.FOLLOWED_KOL) for e in body["items"])
    hide = {
        "user_id": Tiny.USER,
        "item_id": 1000,
        "kol_id": Tiny.FOLLOWED_KOL,
        "post_id": 500,
        "action": "hide",
    }
    assert (await post_events(client, hide)).status_code == 202
    after = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
    assert after["items"] and not any(e["kol_id"] == str(Tiny.FOLLOWED_KOL) for e in after["items"])


async def test_impression_marks_seen(client: httpx.AsyncClient) -> None:
    page = await feed(client, 2, limit=5)
    events = [
        {"user_id": 2, "item_id": e["item_id"], "action": "impression", "request_id": page["request_id"]}
        for e in page["items"]
    ]
    assert (await post_events(client, *events)).json()["accepted"] == 5
    nxt = await feed(client, 2, limit=5)
    assert len(nxt["items"]) == 5 and not set(items_of(page)) & set(items_of(nxt))


async def test_events_fill_category_from_the_model(app: FastAPI, client: httpx.AsyncClient) -> None:
    recorded: list[StoreEvent] = []

    class Recording(MemoryStore):
        async def record_events(self, events: Sequence[StoreEvent]) -> None:
            recorded.extend(events)
            await super().record_events(events)

    store = Recording()  # holds the app's log as the outbox would have sealed it (exactly-once position)
    await store.seal_log(service_state(app).replayer.log_id, service_state(app).replayer.position)
    app.dependency_overrides[get_store] = lambda: store
    r = await post_events(
        client,
        {"user_id": 1, "item_id": 1002, "action": "click", "ts": 1_700_000_000},
        {"user_id": 1, "item_id": 77_777, "action": "share", "to_user_id": 2},
    )
    assert r.status_code == 202
    assert [(e.item_id, e.category) for e in recorded] == [(1002, category_of(1002)), (77_777, None)]
    assert recorded[0].ts == 1_700_000_000 and recorded[1].ts > 1_700_000_000
    assert recorded[1].to_user_id == 2


# ------------------------------------------------------------------ events validation
@pytest.mark.parametrize(
    "body, needle",
    [
        ({"events": [{"user_id": 1, "item_id": 2, "action": "purchase"}]}, "unknown action 'purchase'"),
        ({"events": [{"user_id": 1, "action": "click"}]}, "item_id"),
        ({"events": [{"user_id": "u" * 129, "item_id": 2, "action": "click"}]}, "user_id"),
        ({"events": [{"user_id": 1, "item_id": 2.5, "action": "click"}]}, "item_id"),
        ({"events": [{"user_id": 1, "item_id": 2, "action": "click", "colour": "red"}]}, "colour"),
        ({"events": []}, "events"),
        ({"evnts": []}, "evnts"),
        ([1, 2], "body"),
    ],
)
async def test_malformed_event_batches_are_422(client: httpx.AsyncClient, body: Any, needle: str) -> None:
    r = await client.post("/v1/events", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


async def test_event_batch_limit(client: httpx.AsyncClient) -> None:
    one = {"user_id": 1, "item_id": 1010, "action": "impression"}
    assert (await client.post("/v1/events", json={"events": [one] * 1000})).json()["accepted"] == 1000
    r = await client.post("/v1/events", json={"events": [one] * 1001})
    assert r.status_code == 422 and "too many events: 1001" in r.json()["detail"]


async def test_not_json_and_oversized_bodies(client: httpx.AsyncClient, app: FastAPI) -> None:
    r = await client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    limit = service_state(app).settings.max_body_bytes
    r = await client.post(
        "/v1/events", content=b" " * (limit + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "too large" in r.json()["detail"]


# ------------------------------------------------------------------ admin reload


async def test_reload_bumps_the_version(client: httpx.AsyncClient, runs_root: Path) -> None:
    make_tiny_run(runs_root / "run2", version=2)
    r = await client.post("/v1/admin/reload", json={"run_dir": "run2"}, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["previous"]["version"] == 1 and r.json()["current"]["version"] == 2
    assert (await feed(client, Tiny.USER))["model_version"] == 2
    model = await client.get("/v1/admin/model", headers=auth())
    assert model.json()["run_id"] == "tiny-v2"
    # an absolute path inside the root works too
    r = await client.post("/v1/admin/reload", json={"run_dir": str(runs_root / "run1")}, headers=auth())
    assert r.status_code == 200 and r.json()["current"]["version"] == 1


@pytest.mark.parametrize(
    "headers", [{}, auth("wrong"), {"Authorization": TOKEN}, {"Authorization": "Basic x"}]
)
async def test_reload_needs_the_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await client.post("/v1/admin/reload", json={"run_dir": "run1"}, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_admin_disabled_without_token_unless_dev(runs_root: Path, ranking_dir: Path) -> None:
    for dev, status in ((False, 403), (True, 200)):
        app = create_app(make_settings(runs_root, ranking_dir, admin_token=None, dev_mode=dev))
        async with running(app) as client:
            r = await client.post("/v1/admin/reload", json={"run_dir": "run1"}, headers=auth("anything"))
            assert r.status_code == status, r.text


@pytest.mark.parametrize("run_dir", ["../outside", "run1/../../outside", "/etc", ".", "", "run1\x00"])
async def test_reload_refuses_paths_outside_the_root(
    client: httpx.AsyncClient, tmp_path: Path, run_dir: str
) -> None:
    make_tiny_run(tmp_path / "outside", version=9)  # a valid run, but not under runs_root
    r = await client.post("/v1/admin/reload", json={"run_dir": run_dir}, headers=auth())
    assert r.status_code in (400, 422), r.text
    assert (await feed(client, Tiny.USER))["model_version"] == 1


async def test_symlink_escaping_the_root_is_refused(
    client: httpx.AsyncClient, tmp_path: Path, runs_root: Path
) -> None:
    make_tiny_run(tmp_path / "outside", version=9)
    (runs_root / "sneaky").symlink_to(tmp_path / "outside")
    r = await client.post("/v1/admin/reload", json={"run_dir": "sneaky"}, headers=auth())
    assert r.status_code == 400


async def test_corrupt_run_keeps_the_old_model(client: httpx.AsyncClient, runs_root: Path) -> None:
    bad = make_tiny_run(runs_root / "run3", version=3)
    emb = bad / "item_emb.npy"
    data = bytearray(emb.read_bytes())
    data[-1] ^= 0xFF
    emb.write_bytes(bytes(data))
    r = await client.post("/v1/admin/reload", json={"run_dir": "run3"}, headers=auth())
    assert r.status_code == 409
    assert "checksum mismatch for item_emb.npy" in r.json()["detail"]
    assert "still serving tiny-v1 v1" in r.json()["detail"]
    assert (await feed(client, Tiny.USER))["model_version"] == 1
    missing = await client.post("/v1/admin/reload", json={"run_dir": "nope"}, headers=auth())
    assert missing.status_code == 409 and "not a directory" in missing.json()["detail"]


# ------------------------------------------------------------------ health, degraded mode, metrics
class PingFalseStore(MemoryStore):
    async def ping(self) -> bool:
        return False


class DownStore(MemoryStore):
    """A real store whose backend is gone: every read and write raises StoreUnavailable."""

    async def ping(self) -> bool:
        raise StoreUnavailable("connection refused")

    async def user_state(self, user_id: int, now: float | None = None) -> UserState:
        raise StoreUnavailable("connection refused")

    async def user_states(self, user_ids: Sequence[int], now: float | None = None) -> list[UserState]:
        raise StoreUnavailable("connection refused")

    async def bought_by(self, user_ids: Sequence[int]) -> list[set[int]]:
        raise StoreUnavailable("connection refused")

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        raise StoreUnavailable("connection refused")

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        raise StoreUnavailable("connection refused")

    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        raise StoreUnavailable("connection refused")


async def test_livez_readyz(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    app.dependency_overrides[get_store] = lambda: PingFalseStore()
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["reasons"] == ["feature store ping returned false"]
    app.dependency_overrides[get_store] = lambda: DownStore()
    r = await client.get("/readyz")
    assert r.status_code == 503 and "StoreUnavailable" in r.json()["reasons"][0]
    assert (await client.get("/livez")).status_code == 200


async def test_store_down_gives_a_degraded_feed(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.dependency_overrides[get_store] = lambda: DownStore()
    body = await feed(client, Tiny.USER, limit=10)
    assert body["degraded"] is True and len(body["items"]) == 10
    r = await post_events(client, {"user_id": 1, "item_id": 1001, "action": "click"})
    # the event is durable in the log and replayed later: accepted, not applied yet
    assert r.status_code == 202 and r.json()["accepted"] == 1 and r.json()["applied_to_store"] is False
    metrics = (await client.get("/metrics")).text
    assert 'kolfeed_feed_degraded_total{reason="store_unavailable"} 1.0' in metrics


async def test_unreachable_redis_degrades_and_never_leaks_the_password(
    runs_root: Path, ranking_dir: Path
) -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"  # nothing listens on port 1
    app = create_app(make_settings(runs_root, ranking_dir, store_url=url, request_deadline_s=2.0))
    async with running(app) as client:
        body = await feed(client, Tiny.USER, limit=5)
        assert body["degraded"] is True and len(body["items"]) == 5
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        for r in (ready, await client.get("/metrics"), await client.get("/openapi.json")):
            assert "hunter2secret" not in r.text


async def test_metrics_count_requests_items_events(client: httpx.AsyncClient) -> None:
    await feed(client, Tiny.USER, limit=7)
    await post_events(client, {"user_id": 1, "item_id": 1010, "action": "click"})
    await client.get("/v1/feed", params={"user_id": 1, "limit": 0})
    text = (await client.get("/metrics")).text
    assert 'kolfeed_http_requests_total{method="GET",route="/v1/feed",status="200"} 1.0' in text
    assert 'kolfeed_http_requests_total{method="GET",route="/v1/feed",status="422"} 1.0' in text
    assert 'kolfeed_http_request_duration_seconds_count{method="GET",route="/v1/feed"} 2.0' in text
    served = [line for line in text.splitlines() if line.startswith("kolfeed_feed_items_served_total")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in served) == 7
    assert 'kolfeed_events_accepted_total{action="click"} 1.0' in text
    assert "kolfeed_model_version 1.0" in text
    assert 'kolfeed_feed_responses_total{arm="default"} 1.0' in text


async def test_items_served_are_counted_per_source(client: httpx.AsyncClient) -> None:
    pages = [await feed(client, user, limit=40, variant=LOOSE) for user in (Tiny.USER, 2, Tiny.USER)]
    expected: dict[str, int] = {}
    for page in pages:
        for e in page["items"]:
            expected[e["source"]] = expected.get(e["source"], 0) + 1
    assert len(expected) >= 5
    text = (await client.get("/metrics")).text
    served = {
        line.split('source="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kolfeed_feed_items_served_total{")
    }
    assert served == expected
    assert 'kolfeed_feed_responses_total{arm="loose"} 3.0' in text
    assert 'kolfeed_http_requests_total{method="GET",route="/v1/feed",status="200"} 3.0' in text


async def test_docs_and_unknown_routes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/feed", "/v1/events", "/v1/admin/reload", "/readyz"} <= set(spec["paths"])
    assert (await client.get("/v2/nothing")).status_code == 404
    assert (await client.delete("/v1/feed")).status_code == 405
    text = (await client.get("/metrics")).text
    assert 'kolfeed_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in text
    assert 'kolfeed_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


async def test_unexpected_error_is_a_bare_json_500(runs_root: Path, ranking_dir: Path) -> None:
    class BrokenStore(MemoryStore):
        async def user_state(self, user_id: int, now: float | None = None) -> UserState:
            raise RuntimeError("bug: secret internals")

        async def feed_state(
            self, user_id: int, friend_ids: Sequence[int], now: float | None = None
        ) -> tuple[UserState, list[set[int]]]:
            raise RuntimeError("bug: secret internals")

    app = create_app(make_settings(runs_root, ranking_dir))
    app.dependency_overrides[get_store] = lambda: BrokenStore()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://kolfeed.test") as client:
            r = await client.get("/v1/feed", params={"user_id": 1})
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}


# ------------------------------------------------------------------ trending from the process's cache
async def trending_store(item: int = 1007) -> TrendingStore:
    """A store in which other users just bought ``item`` (KOL 11, no other source for user 1)."""
    store = TrendingStore()  # a real memory store counting (and, when down, failing) trending reads
    await store.record_events(
        [
            StoreEvent(ts=time.time(), user_id=u, item_id=item, action="buy", category=category_of(item))
            for u in (4, 5, 6)
        ]
    )
    await store.record_events(  # and user 1 bought the ANN item: live user state to see in the page
        [StoreEvent(ts=time.time(), user_id=Tiny.USER, item_id=Tiny.ANN_ITEM, action="buy")]
    )
    return store


@pytest.mark.parametrize("cache_s, reads", [(3600.0, 1), (0.0, 3)])
async def test_trending_is_read_once_per_cache_period(
    runs_root: Path, ranking_dir: Path, cache_s: float, reads: int
) -> None:
    app = create_app(make_settings(runs_root, ranking_dir, trending_cache_s=cache_s))
    store = await trending_store()
    app.dependency_overrides[get_store] = lambda: store
    async with running(app) as client:
        pages = [await feed(client, Tiny.USER, limit=40, variant=LOOSE) for _ in range(3)]
    assert store.reads == reads
    assert all(not p["degraded"] and p["items"] == pages[0]["items"] for p in pages)
    assert "trending in apparel" in {int(e["item_id"]): e for e in pages[0]["items"]}[1007]["reasons"]


@pytest.mark.parametrize("stale_s", [3600.0, 0.0])
async def test_trending_outage_degrades_the_page_and_may_use_the_last_list(
    runs_root: Path, ranking_dir: Path, stale_s: float
) -> None:
    store = await trending_store()
    untrending = create_app(make_settings(runs_root, ranking_dir, trending_k=0))  # run popularity instead
    untrending.dependency_overrides[get_store] = lambda: store
    async with running(untrending) as client:
        popularity_page = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
    settings = make_settings(runs_root, ranking_dir, trending_cache_s=0.05, trending_stale_s=stale_s)
    app = create_app(settings)
    app.dependency_overrides[get_store] = lambda: store
    async with running(app) as client:
        before = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
        await asyncio.sleep(0.1)  # the cached list is now older than trending_cache_s
        store.down = True
        after = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
        metrics = (await client.get("/metrics")).text
    assert not before["degraded"] and before["items"] != popularity_page["items"]
    assert after["degraded"] is True
    assert 'kolfeed_feed_degraded_total{reason="store_unavailable"} 1.0' in metrics
    # the last good list while trending_stale_s allows, else the run's popularity; the user's live
    # state (a bought ANN item) is used either way
    assert after["items"] == (before["items"] if stale_s > 0 else popularity_page["items"])
    assert Tiny.ANN_ITEM not in items_of(after)


# ------------------------------------------------------------------ ranking inline or in a worker thread
async def test_rank_in_thread_or_inline_gives_the_same_pages(runs_root: Path, ranking_dir: Path) -> None:
    store = await trending_store()
    pages: dict[bool, list[Any]] = {}
    threads: dict[bool, set[int]] = {}
    for in_thread in (True, False):
        app = create_app(make_settings(runs_root, ranking_dir, rank_in_thread=in_thread))
        app.dependency_overrides[get_store] = lambda: store
        async with running(app) as client:
            ranker = service_state(app).holder.current.ranker
            rank = ranker.rank
            seen: set[int] = set()

            def recording(*args: Any, rank: Any = rank, seen: set[int] = seen, **kwargs: Any) -> Any:
                seen.add(threading.get_ident())
                return rank(*args, **kwargs)

            ranker.rank = recording
            pages[in_thread] = [
                (await feed(client, user, limit=limit, variant=variant))["items"]
                for user in (Tiny.USER, 2, Tiny.UNKNOWN_USER)
                for variant, limit in ((LOOSE, 40), ("default", 10))
            ]
        threads[in_thread] = seen

    # trending decays with the wall clock, which moves between the two apps: scores agree closely,
    # everything else exactly
    def without_scores(ps: list[Any]) -> list[Any]:
        return [[{k: v for k, v in e.items() if k != "score"} for e in page] for page in ps]

    def scores(ps: list[Any]) -> list[float]:
        return [e["score"] for page in ps for e in page]

    assert without_scores(pages[True]) == without_scores(pages[False]) and all(pages[True])
    assert scores(pages[True]) == pytest.approx(scores(pages[False]), rel=1e-3)
    loop_thread = threading.get_ident()
    assert threads[False] == {loop_thread} and loop_thread not in threads[True]


# ------------------------------------------------------------------ the real Redis store
@pytest.fixture
def redis_test_db(redis_url: str) -> str:
    """The test Redis db (KOLFEED_TEST_REDIS_DB, emptied around the test) with a unique key prefix."""
    return f"{redis_url}?prefix=kf:serving-test:{uuid.uuid4().hex}:"


@pytest.mark.redis
async def test_event_feed_loop_on_redis(redis_test_db: str, runs_root: Path, ranking_dir: Path) -> None:
    app = create_app(make_settings(runs_root, ranking_dir, store_url=redis_test_db))
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        body = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
        assert body["degraded"] is False
        assert Tiny.ANN_ITEM in items_of(body) and any(
            e["kol_id"] == str(Tiny.FOLLOWED_KOL) for e in body["items"]
        )
        r = await post_events(
            client,
            {"user_id": Tiny.USER, "item_id": Tiny.ANN_ITEM, "action": "buy", "value": 12.0},
            {"user_id": Tiny.USER, "item_id": 1000, "kol_id": Tiny.FOLLOWED_KOL, "action": "hide"},
            *[{"user_id": f, "item_id": 1020, "action": "buy"} for f in Tiny.FRIENDS],
        )
        assert r.status_code == 202 and r.json()["accepted"] == 4
        after = await feed(client, Tiny.USER, limit=40, variant=LOOSE)
        assert after["degraded"] is False
        assert Tiny.ANN_ITEM not in items_of(after)
        assert not any(e["kol_id"] == str(Tiny.FOLLOWED_KOL) for e in after["items"])
        assert "2 friends bought this" in {int(e["item_id"]): e for e in after["items"]}[1020]["reasons"]

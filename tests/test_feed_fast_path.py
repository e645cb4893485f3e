"""The feed's fast path (serving/feed_fast_path.py) answers exactly as the FastAPI route does.

Every query is sent twice to one app: once as it is (the fast path takes the well-formed ones), once
with a no-op dependency override, which sends the request through the route. Status, headers and
body must agree (scores within float tolerance: live affinities decay with the wall clock between
the two requests); the well-formed queries must really have taken the fast path and the others not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import QueryParams

import serving.feed_fast_path as fast_path_module
from serving.app import create_app
from serving.deps import get_metrics
from serving.feed_fast_path import fast_query
from tests.ranking_fixtures import Tiny, loose_ranking_dir, make_tiny_run
from tests.service_harness import make_settings, running

FAST = [
    "user_id=1",
    "user_id=1&limit=5",
    f"user_id={Tiny.UNKNOWN_USER}",
    f"user_id={Tiny.SOCIAL_ONLY_USER}&exclude=1000,%201001",
    "user_id=2&variant=default&limit=10",
    "limit=3&user_id=alice",
    "user_id=1&exclude=a,,b",
]
ROUTE = [
    "user_id=1&limit=0",
    "user_id=1&limit=x",
    "user_id=1&variant=nope",
    "user_id=1&bogus=1",
    "limit=5",
    "user_id=1&exclude=",
    "user_id=1&user_id=2",
    "",
]


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_tiny_run(root / "run1", version=1)
    return root


def _scores(body: Any) -> list[float]:
    return [e["score"] for e in body.get("items", [])] if isinstance(body, dict) else []


def _without_scores(body: Any) -> Any:
    if isinstance(body, dict) and "items" in body:
        return {**body, "items": [{k: v for k, v in e.items() if k != "score"} for e in body["items"]]}
    return body


async def test_fast_path_answers_like_the_route(
    runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served_fast: list[str] = []
    real_get_feed = fast_path_module.get_feed

    async def counting(*args: Any, **kwargs: Any) -> Any:
        page = await real_get_feed(*args, **kwargs)  # a FeedError leaves it to the route
        served_fast.append(args[0].user_id)
        return page

    monkeypatch.setattr(fast_path_module, "get_feed", counting)
    settings = make_settings(runs_root, loose_ranking_dir(tmp_path / "ranking"), event_log_dir=None)
    app = create_app(settings)
    async with running(app) as client:
        events = [
            {"user_id": 1, "item_id": 1001, "action": "click", "kol_id": Tiny.FOLLOWED_KOL},
            {"user_id": 1, "item_id": 1004, "action": "impression"},
            {"user_id": 2, "item_id": 1007, "action": "buy", "value": 3.0},
            {"user_id": 3, "item_id": 1007, "action": "buy", "value": 3.0},
        ]
        assert (await client.post("/v1/events", json={"events": events})).status_code == 202

        async def both(query: str) -> tuple[httpx.Response, httpx.Response]:
            headers = {"x-request-id": "same-id"}
            fast = await client.get(f"/v1/feed?{query}", headers=headers)
            app.dependency_overrides[get_metrics] = get_metrics  # changes nothing but the path taken
            try:
                route = await client.get(f"/v1/feed?{query}", headers=headers)
            finally:
                app.dependency_overrides.clear()
            return fast, route

        pages = 0
        for query in FAST + ROUTE:
            before = len(served_fast)
            fast, route = await both(query)
            pages += (fast.status_code == 200) + (route.status_code == 200)
            assert (len(served_fast) - before == 1) == (query in FAST), query
            assert fast.status_code == route.status_code, query
            assert fast.headers.items() == route.headers.items(), query
            assert _without_scores(fast.json()) == _without_scores(route.json()), query
            assert _scores(fast.json()) == pytest.approx(_scores(route.json()), rel=1e-5), query
            if query in FAST:
                assert fast.status_code == 200 and fast.json()["items"], query
                assert fast.json()["request_id"] == "same-id"
            else:  # the route's answer (422, except for an empty exclude and a repeated user_id)
                ok = query in ("user_id=1&exclude=", "user_id=1&user_id=2")
                assert fast.status_code == (200 if ok else 422), query
        metrics = (await client.get("/metrics")).text
    # the fast path's requests are counted under the route's template like the route's own
    assert pages == 2 * len(FAST) + 4
    assert f'kolfeed_http_requests_total{{method="GET",route="/v1/feed",status="200"}} {pages}.0' in metrics
    assert f'kolfeed_feed_responses_total{{arm="default"}} {pages}.0' in metrics


async def test_route_serves_when_the_fast_path_is_off(
    runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(fast_path_module, "get_feed", lambda *a, **k: calls.append(a))
    settings = make_settings(
        runs_root, loose_ranking_dir(tmp_path / "ranking"), event_log_dir=None, feed_fast_path=False
    )
    app = create_app(settings)
    async with running(app) as client:
        r = await client.get("/v1/feed?user_id=1")
    assert r.status_code == 200 and r.json()["items"] and calls == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"user_id=1&limit=5", {"user_id": "1", "limit": "5"}),
        (b"user_id=a%2Cb+c", {"user_id": "a,b c"}),
        (b"user_id=caf%C3%A9&exclude=%E9", {"user_id": "caf\xe9", "exclude": "\ufffd"}),
        (b"", {}),
        (b"user_id=1&user_id=2", None),
        (b"user_id=1&other=2", None),
        (b"user_id=", None),
        (b"user_id", None),
    ],
)
def test_fast_query_takes_only_plain_queries(raw: bytes, expected: dict[str, str] | None) -> None:
    assert fast_query(raw) == expected
    if expected is not None:  # what the route reads from the same query string
        assert dict(QueryParams(raw)) == expected

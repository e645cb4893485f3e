"""``POST /v1/events`` takes a shortcut past FastAPI's generic request handler (serving/routers/events.py,
``EventsRoute``). These tests pin that the shortcut changes nothing a client or the log can see:

- the same request through the shortcut and through FastAPI's own handler of the same endpoint (a
  second route added by the test) gets the same status, content type and body (sequence numbers
  aside), and logs the same events;
- every rejected request (bad JSON, bad fields, other content types) gets FastAPI's own answer;
- validating the raw body in pydantic's JSON mode accepts exactly what parsing it with ``json`` and
  validating the result accepts, with equal values (a property test);
- the 202 is still sent only after the fsync covering the event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import features.eventlog as eventlog_mod
from features.eventlog import LogReader
from serving.app import create_app
from serving.deps import get_store
from serving.routers.events import router as events_router
from serving.schemas import EventBatch
from serving.service_state import service_state
from tests.eventlog_fixtures import HeldFsync
from tests.ranking_fixtures import loose_ranking_dir, make_tiny_run
from tests.service_harness import make_settings, running

GENERIC = "/generic/v1/events"
"""The same endpoint function served by FastAPI's default route class (added by the ``app`` fixture)."""
JSON = {"content-type": "application/json"}
T = 1_700_000_000


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    make_tiny_run(tmp_path / "runs" / "run1")
    settings = make_settings(
        tmp_path / "runs", loose_ranking_dir(tmp_path / "ranking"), event_log_dir=tmp_path / "log"
    )
    application = create_app(settings)
    route = next(r for r in events_router.routes if isinstance(r, APIRoute) and r.path == "/v1/events")
    assert type(route) is not APIRoute  # the shortcut's route class
    application.router.add_api_route(
        GENERIC,
        route.endpoint,
        methods=["POST"],
        status_code=202,
        response_model=route.response_model,
        include_in_schema=False,
    )
    async with running(application) as client:
        application.state.test_client = client
        yield application


async def post(app: FastAPI, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    client: httpx.AsyncClient = app.state.test_client
    return await client.post(path, content=body, headers=JSON if headers is None else headers)


def _event_fields(ev: Any) -> dict[str, Any]:
    return {f: getattr(ev, f) for f in eventlog_mod.FIELDS}


def logged_events(app: FastAPI, first: int, last: int) -> list[dict[str, Any]]:
    log_dir = service_state(app).event_log.directory  # type: ignore[union-attr]
    by_seq = dict(LogReader(log_dir).iter_events())
    return [_event_fields(by_seq[seq]) for seq in range(first, last + 1)]


VALID = [
    {"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]},
    {"events": [{"user_id": "alice", "item_id": "sku-1151", "action": "buy", "value": 19.9, "ts": T}]},
    {"events": [{"user_id": "42", "item_id": 42, "action": "share", "to_user_id": "bob", "ts": T + 0.25}]},
    {"events": [{"user_id": 2**63 - 1, "item_id": 2**70, "action": "like", "kol_id": "mia", "post_id": 7}]},
    {
        "events": [
            {"user_id": "ユーザー", "item_id": "é", "action": "cart", "request_id": "6f1d2c0e", "ts": 0}
        ]
    },
    {"events": [{"user_id": 1, "item_id": 1001, "action": "buy", "value": -3, "kol_id": None}]},
    {
        "events": [
            {"user_id": i, "item_id": 1000 + i % 40, "action": "impression", "ts": T} for i in range(1000)
        ]
    },
]


@pytest.mark.parametrize("body", VALID, ids=range(len(VALID)))
async def test_an_accepted_batch_is_answered_and_logged_as_fastapi_would(app: FastAPI, body: Any) -> None:
    raw = json.dumps(body).encode()
    fast, generic = await post(app, "/v1/events", raw), await post(app, GENERIC, raw)
    assert fast.status_code == generic.status_code == 202, (fast.text, generic.text)
    assert fast.headers["content-type"] == generic.headers["content-type"] == "application/json"
    a, b = fast.json(), generic.json()
    assert list(a) == list(b) == ["accepted", "first_seq", "last_seq", "applied_to_store"]
    assert a["accepted"] == b["accepted"] == len(body["events"])
    assert a["last_seq"] - a["first_seq"] == b["last_seq"] - b["first_seq"] == len(body["events"]) - 1
    assert a["applied_to_store"] is b["applied_to_store"] is True
    assert fast.content == json.dumps(a, separators=(",", ":")).encode()  # compact, as FastAPI's
    mine, theirs = (
        logged_events(app, a["first_seq"], a["last_seq"]),
        logged_events(app, b["first_seq"], b["last_seq"]),
    )
    if "ts" not in body["events"][0]:  # stamped with the time of arrival
        for x, y in zip(mine, theirs, strict=True):
            assert abs(x.pop("ts") - y.pop("ts")) < 60
    assert mine == theirs


REJECTED: list[tuple[bytes, dict[str, str]]] = [
    (b"{not json", JSON),
    (b"", JSON),
    (b"null", JSON),
    (b"[1, 2]", JSON),
    (b'{"events": []}', JSON),
    (b'{"evnts": []}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "purchase"}]}', JSON),
    (b'{"events": [{"user_id": 1, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2.5, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": true, "item_id": 2, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": "", "item_id": 2, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": "a\\u0000b", "item_id": 2, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": "\\ud800", "item_id": 2, "action": "click"}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "colour": "red"}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "ts": "1700000000"}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "ts": -1}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "ts": 1e400}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "ts": NaN}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "buy", "value": Infinity}]}', JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "buy", "value": "3"}]}', JSON),
    (
        b'{"events": [{"user_id": 1, "item_id": 2, "action": "click", "request_id": "' + b"r" * 65 + b'"}]}',
        JSON,
    ),
    (json.dumps({"events": [{"user_id": 1, "item_id": 2, "action": "click"}] * 1001}).encode(), JSON),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click"}]}', {"content-type": "text/plain"}),
    (b'{"events": [{"user_id": 1, "item_id": 2, "action": "click"}]}', {}),
]


@pytest.mark.parametrize(("raw", "headers"), REJECTED, ids=range(len(REJECTED)))
async def test_a_rejected_request_gets_fastapis_own_answer(
    app: FastAPI, raw: bytes, headers: dict[str, str]
) -> None:
    before = service_state(app).event_log.last_seq  # type: ignore[union-attr]
    fast, generic = await post(app, "/v1/events", raw, headers), await post(app, GENERIC, raw, headers)
    assert fast.status_code == generic.status_code and fast.status_code >= 400, fast.text
    assert fast.headers["content-type"] == generic.headers["content-type"]
    assert fast.json() == generic.json()
    assert service_state(app).event_log.last_seq == before  # type: ignore[union-attr]


async def test_a_valid_json_request_skips_fastapis_generic_handler(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU cut itself: the common request never reaches FastAPI's dependency solving."""
    import fastapi.routing

    calls: list[str] = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    raw = json.dumps(VALID[1]).encode()
    assert (await post(app, "/v1/events", raw)).status_code == 202
    assert (await post(app, GENERIC, raw)).status_code == 202
    assert calls == [GENERIC]


async def test_other_json_content_types_are_still_accepted(app: FastAPI) -> None:
    raw = b'{"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]}'
    for content_type in ("application/json; charset=utf-8", "application/vnd.kolfeed+json"):
        r = await post(app, "/v1/events", raw, {"content-type": content_type})
        assert r.status_code == 202, (content_type, r.text)


async def test_a_store_override_is_honoured(app: FastAPI) -> None:
    """Tests swap the store with ``dependency_overrides``; the shortcut must not bypass that."""
    used: list[str] = []
    real = service_state(app).require_store()

    async def spy() -> Any:
        used.append("override")
        return real

    app.dependency_overrides[get_store] = spy
    r = await post(app, "/v1/events", b'{"events": [{"user_id": 1, "item_id": 1000, "action": "buy"}]}')
    assert r.status_code == 202 and used == ["override"]


async def test_no_202_before_the_fsync_covering_the_event(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldFsync().install(monkeypatch)
    raw = b'{"events": [{"user_id": 1, "item_id": 1000, "action": "click"}]}'
    task = asyncio.ensure_future(post(app, "/v1/events", raw))
    assert await asyncio.to_thread(held.entered.wait, 30)
    await asyncio.sleep(0.05)
    assert not task.done(), "answered while its fsync was still running"
    held.release.set()
    r = await task
    assert r.status_code == 202
    assert r.json()["last_seq"] == service_state(app).event_log.last_seq  # type: ignore[union-attr]


# ------------------------------------------------------------------ JSON mode = json.loads + validate
_ID = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=5),
    st.sampled_from(["42", "007", "alice", "", " ", "9223372036854775808"]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
_EVENT = st.fixed_dictionaries(
    {"user_id": _ID, "item_id": _ID, "action": st.sampled_from(["click", "buy", "share", "nope", 3])},
    optional={
        "ts": _VALUE,
        "value": _VALUE,
        "kol_id": _ID,
        "post_id": _ID,
        "to_user_id": _ID,
        "request_id": st.one_of(st.none(), st.text(max_size=70)),
        "extra": _VALUE,
    },
)
_BODY = st.one_of(
    st.fixed_dictionaries({"events": st.lists(_EVENT, max_size=3)}),
    st.dictionaries(st.sampled_from(["events", "evnts"]), st.lists(_EVENT, max_size=2), max_size=2),
    st.lists(_EVENT, max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=_BODY)
def test_json_mode_accepts_exactly_what_parse_then_validate_accepts(body: Any) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    try:
        fast: EventBatch | None = EventBatch.model_validate_json(raw)
    except ValidationError:
        fast = None
    try:
        generic: EventBatch | None = EventBatch.model_validate(json.loads(raw))
    except ValidationError:
        generic = None
    if fast is not None:  # the shortcut only ever takes what it validated itself
        assert generic is not None and fast.model_dump() == generic.model_dump()


async def test_a_graceful_stop_writes_the_replay_position_direct_applies_left_unsaved(tmp_path: Path) -> None:
    from features.replay import POSITION_FILE, read_position

    make_tiny_run(tmp_path / "runs" / "run1")
    settings = make_settings(
        tmp_path / "runs",
        loose_ranking_dir(tmp_path / "ranking"),
        event_log_dir=tmp_path / "log",
        replay_interval_s=60.0,  # no replay round during the test: only the shutdown writes it
    )
    application = create_app(settings)
    async with running(application) as client:
        for item in (1000, 1001, 1002):
            body = {"events": [{"user_id": 1, "item_id": item, "action": "buy"}]}
            r = await client.post("/v1/events", json=body)
            assert r.status_code == 202 and r.json()["applied_to_store"]
        assert read_position(tmp_path / "log" / POSITION_FILE) < 3
    assert read_position(tmp_path / "log" / POSITION_FILE) == 3


async def test_a_request_cut_off_during_its_fsync_is_not_acknowledged_but_the_log_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tiny_run(tmp_path / "runs" / "run1")
    settings = make_settings(
        tmp_path / "runs",
        loose_ranking_dir(tmp_path / "ranking"),
        event_log_dir=tmp_path / "log",
        request_timeout_s=0.2,
    )
    held = HeldFsync()
    application = create_app(settings)
    async with running(application) as client:
        held.install(monkeypatch)
        body = {"events": [{"user_id": 1, "item_id": 1000, "action": "buy"}]}
        r = await client.post("/v1/events", json=body)
        assert held.entered.is_set() and r.status_code == 503 and "deadline" in r.json()["detail"]
        held.release.set()
        r = await client.post(
            "/v1/events", json={"events": [{"user_id": 1, "item_id": 1001, "action": "buy"}]}
        )
        assert r.status_code == 202 and r.json()["first_seq"] == 2, r.text
    logged = [ev.item_id for _, ev in LogReader(tmp_path / "log").iter_events()]
    assert logged == [1000, 1001]  # the cut-off one is logged, as a retried request may be


async def test_fastapis_native_opentelemetry_stays_out_of_requests(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with an OpenTelemetry provider configured, no request asks it for a tracer or meter
    (the service reports through /metrics and its logs; the per-request provider checks cost CPU)."""
    import opentelemetry.metrics
    import opentelemetry.trace

    asked: list[str] = []

    class Provider(opentelemetry.trace.TracerProvider):  # a configured one (not a no-op)
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            asked.append("tracer")
            return opentelemetry.trace.NoOpTracer()

    class Meters(opentelemetry.metrics.MeterProvider):
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            asked.append("meter")
            return opentelemetry.metrics.NoOpMeter(*args)

    tracers, meters = Provider(), Meters()
    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", lambda: tracers)
    monkeypatch.setattr(opentelemetry.metrics, "get_meter_provider", lambda: meters)
    assert (await post(app, "/v1/events", json.dumps(VALID[0]).encode())).status_code == 202
    assert (await app.state.test_client.get("/livez")).status_code == 200
    assert asked == []

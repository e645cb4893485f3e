"""Experiments in the feed service, and the report endpoints, on the tiny run + hand-made events.

Known answers: a user's arm is what ``recsys.experiments.assignment`` says (sticky across app
instances); a page built inside an arm equals the page forced with that arm's variant; the report
endpoints return exactly what the library computes on the same events; GMV per KOL is hand-counted.
"""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI

from recsys.attribution import kol_attribution
from recsys.experiments.assignment import assign
from recsys.experiments.config import ExperimentConfigError, load_experiments
from recsys.experiments.readout import experiment_report
from recsys.experiments.timeseries import experiment_timeseries
from serving import arms
from serving.app import create_app
from serving.event_source import EventSource, EventSourceError, source_kind
from serving.service_state import service_state
from serving.settings import Settings
from tests.experiment_fixtures import (
    DAY,
    KOLS,
    START,
    experiment_events,
    experiment_settings,
    write_experiment,
)
from tests.ranking_fixtures import Tiny, copy_shipped_variants, tiny_runs

# ------------------------------------------------------------------------------------ hand-made data


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def ranking_dir(tmp_path: Path) -> Path:
    return copy_shipped_variants(tmp_path / "ranking")


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tiny_runs(tmp_path / "runs", 1)


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "experiments"
    write_experiment(d, "kolw", [("control", "default", 0.5), ("nokol", "no_kol", 0.5)])
    return d


@pytest.fixture
def events_file(tmp_path: Path, exp_dir: Path) -> Path:
    exp = load_experiments(exp_dir)["kolw"]
    path = tmp_path / "events.parquet"
    pq.write_table(experiment_events(exp, ctr={"control": 0.10, "nokol": 0.16}), path)
    return path


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kolfeed.test") as client:
            yield app, client


async def feed(client: httpx.AsyncClient, user_id: int, **params: Any) -> dict[str, Any]:
    r = await client.get("/v1/feed", params={"user_id": user_id, "limit": 8, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ------------------------------------------------------------------------------------------ feed arm


async def test_arm_is_sticky_across_app_instances(runs_root: Path, ranking_dir: Path, exp_dir: Path) -> None:
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir)
    exp = load_experiments(exp_dir)["kolw"]
    users = [*Tiny.USERS, *range(100, 140)]
    seen: list[dict[int, str]] = []
    for _ in range(2):
        async with running(settings) as (_app, client):
            seen.append({u: (await feed(client, u))["arm"] for u in users})
    assert seen[0] == seen[1]
    assert seen[0] == {u: f"kolw:{assign(u, exp)}" for u in users}
    assert set(seen[0].values()) == {"kolw:control", "kolw:nokol"}
    assert service_state(_app).experiments == {}  # the app dropped its experiments on shutdown


def test_shares_are_honoured_over_many_users(tmp_path: Path) -> None:
    write_experiment(
        tmp_path, "three", [("a", "default", 0.5), ("b", "no_kol", 0.3), ("c", "kol_heavy", 0.2)]
    )
    exps = load_experiments(tmp_path)
    labels = [arms.choose_arm(u, experiments=exps) for u in range(20_000)]
    values, counts = np.unique(labels, return_counts=True)
    got = dict(zip(values.tolist(), (counts / len(labels)).tolist(), strict=True))
    assert set(got) == {"three:a", "three:b", "three:c"}
    for label, share in (("three:a", 0.5), ("three:b", 0.3), ("three:c", 0.2)):
        assert abs(got[label] - share) < 0.015, got


def test_no_active_experiment_means_default(tmp_path: Path) -> None:
    write_experiment(tmp_path, "old", [("a", "no_kol", 1.0)], start="2020-01-01", stop="2020-02-01")
    exps = load_experiments(tmp_path)
    assert arms.choose_arm(7, experiments=exps) == "default"
    assert arms.choose_arm(7, "kol_heavy", experiments=exps) == "kol_heavy"
    assert arms.choose_arm(7, experiments=exps, now=1_579_000_000) == "old:a"  # 2020-01-14


async def test_arm_ranks_with_its_variant(runs_root: Path, ranking_dir: Path, exp_dir: Path) -> None:
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir)
    exp = load_experiments(exp_dir)["kolw"]
    async with running(settings) as (_app, client):
        pages: dict[str, list[tuple[int, float]]] = {}
        for u in Tiny.USERS:
            body = await feed(client, u)
            arm = exp.arm(assign(u, exp))
            assert body["arm"] == f"kolw:{arm.name}"
            forced = await feed(client, u, variant=arm.variant)
            got = [(e["item_id"], round(e["score"], 9)) for e in body["items"]]
            assert got == [(e["item_id"], round(e["score"], 9)) for e in forced["items"]]
            pages.setdefault(arm.name, got)
        # a no_kol page really is scored differently from the default one (same user, both variants)
        default_page = await feed(client, Tiny.USER, variant="default")
        no_kol_page = await feed(client, Tiny.USER, variant="no_kol")
        assert [e["score"] for e in default_page["items"]] != [e["score"] for e in no_kol_page["items"]]


async def test_single_arm_experiment_serves_that_variant(
    runs_root: Path, ranking_dir: Path, tmp_path: Path
) -> None:
    d = tmp_path / "one"
    write_experiment(d, "all_nokol", [("treat", "no_kol", 1.0)])
    async with running(experiment_settings(runs_root, ranking_dir, experiments_dir=d)) as (_app, client):
        body = await feed(client, Tiny.USER)
        forced = await feed(client, Tiny.USER, variant="no_kol")
        default = await feed(client, Tiny.USER, variant="default")
    assert body["arm"] == "all_nokol:treat"
    assert [e["score"] for e in body["items"]] == [e["score"] for e in forced["items"]]
    assert [e["score"] for e in body["items"]] != [e["score"] for e in default["items"]]


async def test_no_experiments_dir_serves_default(runs_root: Path, ranking_dir: Path) -> None:
    async with running(experiment_settings(runs_root, ranking_dir, experiments_dir=None)) as (_app, client):
        assert (await feed(client, Tiny.USER))["arm"] == "default"
        assert (await client.get("/v1/experiments")).json() == []


async def test_unknown_variant_in_experiment_fails_startup(
    runs_root: Path, ranking_dir: Path, tmp_path: Path
) -> None:
    d = tmp_path / "bad"
    write_experiment(d, "broken", [("control", "default", 0.5), ("x", "no_such_variant", 0.5)])
    app = create_app(experiment_settings(runs_root, ranking_dir, experiments_dir=d))
    with pytest.raises(
        ExperimentConfigError, match=r"'broken' arm 'x' names ranking variant 'no_such_variant'"
    ):
        async with app.router.lifespan_context(app):
            pass


# ------------------------------------------------------------------------------------------- reports


async def test_experiment_list_and_report(
    runs_root: Path, ranking_dir: Path, exp_dir: Path, events_file: Path
) -> None:
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir, events_path=events_file)
    exp = load_experiments(exp_dir)["kolw"]
    async with running(settings) as (app, client):
        listed = (await client.get("/v1/experiments")).json()
        assert listed == [
            {
                "name": "kolw",
                "description": "",
                "control": "control",
                "start": None,
                "stop": None,
                "active": True,
                "arms": [
                    {"name": "control", "variant": "default", "share": 0.5, "label": "kolw:control"},
                    {"name": "nokol", "variant": "no_kol", "share": 0.5, "label": "kolw:nokol"},
                ],
            }
        ]
        r = await client.get("/v1/experiments/kolw/report")
        assert r.status_code == 200, r.text
        expected = experiment_report(pq.read_table(events_file), exp)
        assert r.json() == expected.model_dump(mode="json")
        nokol = r.json()["arms"][1]
        assert nokol["vs_control"]["ctr"]["significant"] is True and nokol["vs_control"]["ctr"]["lift"] > 0.3
        assert r.json()["srm_warning"] is False
        again = await client.get("/v1/experiments/kolw/report")
        assert again.json() == r.json() and service_state(app).event_source.computations == 1  # cached
        missing = await client.get("/v1/experiments/nope/report")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        assert (await client.get("/v1/experiments/kolw/report", params={"alpha": 2})).status_code == 422


async def test_timeseries_ends_at_the_final_readout(
    runs_root: Path, ranking_dir: Path, exp_dir: Path, events_file: Path
) -> None:
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir, events_path=events_file)
    async with running(settings) as (_app, client):
        r = await client.get("/v1/experiments/kolw/timeseries")
        report = (await client.get("/v1/experiments/kolw/report")).json()
        hourly = await client.get("/v1/experiments/kolw/timeseries", params={"bucket": "hour"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket_seconds"] == DAY and [p["ts"] for p in body["points"]] == [
        START + (d + 1) * DAY for d in range(5)
    ]
    users = [sum(a["users"] for a in p["arms"].values()) for p in body["points"]]
    assert users == sorted(users) and users[0] > 0
    last = body["points"][-1]["arms"]
    for arm in report["arms"]:
        assert last[arm["name"]]["users"] == arm["users"]
        assert last[arm["name"]]["ctr"] == arm["ctr"]
        assert last[arm["name"]]["buy_conversion"] == arm["buy_conversion"]
    # the interval narrows as users accumulate
    first_ci = body["points"][0]["arms"]["control"]["ctr"]
    last_ci = last["control"]["ctr"]
    assert last_ci["ci_high"] - last_ci["ci_low"] < first_ci["ci_high"] - first_ci["ci_low"]
    assert hourly.status_code == 200 and len(hourly.json()["points"]) <= 60


def test_timeseries_merges_buckets_beyond_max_points(exp_dir: Path, events_file: Path) -> None:
    exp = load_experiments(exp_dir)["kolw"]
    ts = experiment_timeseries(pq.read_table(events_file), exp, bucket="hour", max_points=10)
    assert 1 <= len(ts.points) <= 10
    with pytest.raises(ValueError, match="bucket"):
        experiment_timeseries(pq.read_table(events_file), exp, bucket="week")  # type: ignore[arg-type]


async def test_reports_without_event_source_are_503(
    runs_root: Path, ranking_dir: Path, exp_dir: Path
) -> None:
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir, event_log_dir=None)
    async with running(settings) as (_app, client):
        for url in ("/v1/experiments/kolw/report", "/v1/kols/leaderboard", "/v1/kols/10/report"):
            r = await client.get(url)
            assert r.status_code == 503 and "KOLFEED_EVENTS_PATH" in r.json()["detail"], url


async def test_kol_endpoints_known_answers(runs_root: Path, ranking_dir: Path, tmp_path: Path) -> None:
    # KOL 10: 3 impressions, 2 clicks, 1 share, a direct buy of 50 and a friend's buy of 30 via the share;
    # KOL 11: 1 impression, 1 buy of 5; one buy of 7 without a KOL.
    rows = [
        (100, 1, 1000, "impression", 10, None, "r1", None),
        (101, 1, 1000, "click", 10, None, "r1", None),
        (102, 1, 1000, "buy", 10, None, "r1", 50.0),
        (103, 1, 1000, "share", 10, 2, "r1", None),
        (104, 2, 1000, "impression", 10, None, "s0", None),
        (105, 2, 1000, "click", 10, None, "s0", None),
        (106, 2, 1000, "buy", 10, None, "s0", 30.0),
        (107, 3, 1001, "impression", 11, None, "r2", None),
        (108, 3, 1001, "buy", 11, None, "r2", 5.0),
        (109, 4, 1002, "buy", None, None, None, 7.0),
    ]
    cols = ("ts", "user_id", "item_id", "action", "kol_id", "to_user_id", "request_id", "value")
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    path = tmp_path / "kol_events.csv"
    pcsv.write_csv(pa.table(data), path)
    costs = tmp_path / "costs.csv"
    costs.write_text("kol_id,cost\n10,40\n")
    settings = experiment_settings(
        runs_root, ranking_dir, experiments_dir=None, events_path=path, kol_costs_path=costs
    )
    async with running(settings) as (_app, client):
        board = (await client.get("/v1/kols/leaderboard", params={"limit": 1, "commission": 0.1})).json()
        k10 = (await client.get("/v1/kols/10/report", params={"commission": 0.1})).json()
        k11 = (await client.get("/v1/kols/11/report")).json()
        missing = await client.get("/v1/kols/999/report")
        bad = await client.get("/v1/kols/leaderboard", params={"commission": 2})
    assert board["log_gmv"] == 92.0 and board["balanced"] is True and board["kols_total"] == 2
    assert [k["kol_id"] for k in board["kols"]] == ["10"]
    assert board["unattributed"]["gmv"] == 7.0
    assert (k10["impressions"], k10["clicks"], k10["shares"], k10["buys"]) == (2, 2, 1, 2)
    assert (k10["gmv"], k10["direct_gmv"], k10["share_gmv"]) == (80.0, 50.0, 30.0)
    assert k10["commission"] == pytest.approx(8.0) and k10["roi"] == pytest.approx(0.2)  # 8 / 40
    assert board["costs_known"] is True
    assert k11["gmv"] == 5.0 and k11["commission"] is None
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    assert bad.status_code == 422

    costs.write_text("kol,price\n10,40\n")
    settings = experiment_settings(
        runs_root, ranking_dir, experiments_dir=None, events_path=path, kol_costs_path=costs
    )
    async with running(settings) as (_app, client):
        r = await client.get("/v1/kols/leaderboard")
    assert r.status_code == 503 and "costs.csv" in r.json()["detail"] and "kol_id" in r.json()["detail"]


async def test_events_posted_to_the_service_reach_the_readout(
    runs_root: Path, ranking_dir: Path, exp_dir: Path
) -> None:
    """Feed → events with the page's request_id → the service's own event log → the arm's readout."""
    settings = experiment_settings(runs_root, ranking_dir, experiments_dir=exp_dir, report_cache_s=0)
    exp = load_experiments(exp_dir)["kolw"]
    expected: dict[str, list[int]] = {"control": [0, 0, 0], "nokol": [0, 0, 0]}  # users, impressions, clicks
    async with running(settings) as (_app, client):
        for u in range(200, 240):
            page = await feed(client, u, limit=4)
            arm = page["arm"].split(":")[1]
            events = [
                {
                    "user_id": u,
                    "item_id": e["item_id"],
                    "kol_id": e["kol_id"],
                    "action": "impression",
                    "request_id": page["request_id"],
                }
                for e in page["items"]
            ]
            clicks = 1 + u % 2 if arm == "nokol" else u % 2
            events += [{**ev, "action": "click"} for ev in events[:clicks]]
            assert (await client.post("/v1/events", json={"events": events})).status_code == 202
            expected[arm][0] += 1
            expected[arm][1] += len(page["items"])
            expected[arm][2] += clicks
        report = (await client.get("/v1/experiments/kolw/report")).json()
        kols = (await client.get("/v1/kols/leaderboard", params={"limit": 100})).json()
    for a in report["arms"]:
        assert [a["users"], a["impressions"], a["clicks"]] == expected[a["name"]], a["name"]
        assert a["users"] > 0
    assert f"kolw:{assign(200, exp)}" == arms.choose_arm(200, experiments={"kolw": exp})
    assert sum(k["impressions"] for k in kols["kols"]) == expected["control"][1] + expected["nokol"][1]


# ----------------------------------------------------------------------------------------- event source


def test_event_source_kinds_and_cache(tmp_path: Path, exp_dir: Path) -> None:
    exp = load_experiments(exp_dir)["kolw"]
    table = experiment_events(exp, n_users=50, days=2)
    world = tmp_path / "world"
    world.mkdir()
    pq.write_table(table, world / "events.parquet")
    assert source_kind(world / "events.parquet") == "file"
    assert source_kind(world) == "world"
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    assert source_kind(log_dir) == "eventlog"
    with pytest.raises(EventSourceError, match="not found"):
        source_kind(tmp_path / "absent")

    clock = [0.0]
    source = EventSource(world, cache_s=30.0, clock=lambda: clock[0])
    n_before = source.report_sync("n", lambda t: t.events.num_rows)
    assert n_before == table.num_rows and source.computations == 1
    pq.write_table(table.slice(0, 10), world / "events.parquet")
    assert source.report_sync("n", lambda t: t.events.num_rows) == n_before  # within 30 s: cached
    clock[0] = 31.0
    assert source.report_sync("n", lambda t: t.events.num_rows) == 10  # stale and changed: recomputed
    clock[0] = 62.0
    assert source.report_sync("n", lambda t: t.events.num_rows) == 10 and source.computations == 2

    with pytest.raises(EventSourceError, match="KOLFEED_EVENTS_PATH"):
        EventSource(None).report_sync("n", lambda t: 0)


def test_event_log_directory_is_read_with_load_event_log(
    tmp_path: Path, exp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = load_experiments(exp_dir)["kolw"]
    table = experiment_events(exp, n_users=40, days=2)
    # the service's event log carries extra columns and float timestamps; reports must cope
    logged = table.set_column(0, "ts", pc.cast(table["ts"], pa.float64())).append_column(
        "category", pa.array(["beauty"] * table.num_rows)
    )
    calls: list[Path] = []

    def load_event_log(directory: Path) -> pa.Table:
        calls.append(Path(directory))
        return logged

    fake = types.ModuleType("features.eventlog")
    fake.load_event_log = load_event_log  # type: ignore[attr-defined]
    fake.EventLogError = RuntimeError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "features.eventlog", fake)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "segment-000001.bin").write_bytes(b"x")
    got = EventSource(log_dir).report_sync("r", lambda t: experiment_report(t.events, exp))
    assert calls == [log_dir]
    assert got == experiment_report(table, exp)


def test_event_log_parent_with_worker_logs_is_read_whole(tmp_path: Path, exp_dir: Path) -> None:
    from features.base import StoreEvent
    from features.eventlog import claim_worker_log

    exp = load_experiments(exp_dir)["kolw"]
    table = experiment_events(exp, n_users=40, days=2)
    rows = [StoreEvent(**{**r, "value": r["value"] or 0.0}) for r in table.to_pylist()]
    logs = [claim_worker_log(tmp_path / "eventlog", fsync=False)[1] for _ in range(2)]
    try:
        for i, ev in enumerate(rows):  # requests land on either worker
            logs[i % 3 == 0].append_batch([ev])
        parent = tmp_path / "eventlog"
        assert source_kind(parent) == "eventlog"
        clock = [0.0]
        source = EventSource(parent, cache_s=30.0, clock=lambda: clock[0])
        got = source.report_sync("r", lambda t: experiment_report(t.events, exp))
        logged = table.set_column(
            table.schema.get_field_index("value"), "value", pc.fill_null(table["value"], 0.0)
        )  # the log stores 0.0 for "no value"
        assert got == experiment_report(logged, exp)
        assert source.report_sync("n", lambda t: t.events.num_rows) == len(rows)
        logs[1].append_batch([rows[0]])  # a write to worker-1 alone invalidates the cached tables
        clock[0] = 31.0
        assert source.report_sync("n", lambda t: t.events.num_rows) == len(rows) + 1
    finally:
        for log in logs:
            log.close()


def test_attribution_from_world_dir_uses_side_tables(tmp_path: Path, exp_dir: Path) -> None:
    exp = load_experiments(exp_dir)["kolw"]
    table = experiment_events(exp, n_users=60, days=2)
    pq.write_table(table, tmp_path / "events.parquet")
    pq.write_table(
        pa.table({"kol_id": pa.array(KOLS, pa.int64()), "verticals": ["beauty", "home", "food", "apparel"]}),
        tmp_path / "kols.parquet",
    )
    tables = EventSource(tmp_path).tables()
    assert tables.kols is not None and tables.items is None and tables.follows is None
    report = kol_attribution(tables.events, kols=tables.kols)
    assert report.balanced and {k.kol_id for k in report.kols} <= {str(k) for k in KOLS}


# ------------------------------------------------------------------------------------------- dashboard


async def test_dashboard_page_and_assets(runs_root: Path, ranking_dir: Path) -> None:
    async with running(experiment_settings(runs_root, ranking_dir, experiments_dir=None)) as (_app, client):
        page = await client.get("/dashboard")
        js = await client.get("/static/dashboard.js")
        css = await client.get("/static/dashboard.css")
        missing = await client.get("/static/app.py")
        traversal = await client.get("/static/..%2Fapp.py")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/dashboard.js">' in page.text and "http" not in page.text.split("<body")[1]
    assert js.status_code == 200 and "data-rendered" in js.text and "javascript" in js.headers["content-type"]
    assert css.status_code == 200
    assert missing.status_code == 404 and traversal.status_code == 404

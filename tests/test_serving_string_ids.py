"""The shop's own ids through the HTTP API: strings (UUIDs, SKUs, handles) and integers, on both stores.

The run is the tiny known world with string ids (``tests.string_id_fixtures``); requests send the
shop's strings (or JSON integers), responses answer with them, and everything in between (store,
event log, ranker) works on int64 keys.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import artifacts as A
from recsys.ids import id_key
from recsys.ranking.feed_model import FeedModel
from tests.ranking_fixtures import LOOSE, loose_ranking_dir
from tests.service_harness import feed, post_events
from tests.string_id_fixtures import (
    Shop,
    Tiny,
    creator_sales_events,
    make_string_id_run,
    serving,
    settings_for,
)

NEW_SHOPPER = "new-shopper-7f3a"
"""A customer id the run has never seen."""


@pytest.fixture
def ranking_dir(tmp_path: Path) -> Path:
    return loose_ranking_dir(tmp_path / "ranking")


@pytest.fixture
def string_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_string_id_run(root / "run1")
    return root


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    redis_url: str = request.getfixturevalue("redis_url")  # the test db, emptied around the test
    return f"{redis_url}?prefix=kf:string-ids:{uuid.uuid4().hex}:"


def by_item(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["item_id"]: e for e in body["items"]}


# ------------------------------------------------------------------ string ids in, string ids out
async def test_string_ids_go_in_and_come_back_as_the_shop_spells_them(
    string_runs: Path, ranking_dir: Path, store_url: str
) -> None:
    async with serving(settings_for(string_runs, ranking_dir, store_url=store_url)) as client:
        body = await feed(client, Shop.user(Tiny.USER), limit=40, variant=LOOSE)
        assert body["user_id"] == Shop.user(Tiny.USER) and body["degraded"] is False
        entries = body["items"]
        assert len(entries) == Tiny.N_ITEMS - 1  # all but the out-of-stock item
        known_items = {Shop.item(Tiny.ITEM0 + i) for i in range(Tiny.N_ITEMS)}
        assert {e["item_id"] for e in entries} <= known_items - {Shop.item(Tiny.OUT_OF_STOCK_ITEM)}
        assert {e["kol_id"] for e in entries} - {None} <= {Shop.kol(k) for k in Tiny.KOLS}
        assert all(e["post_id"] is None or e["post_id"].startswith("post-") for e in entries)
        # reasons name creators by the shop's handle; social proof works over string user ids
        for e in entries:
            follows = f"because you follow @{Shop.kol(Tiny.FOLLOWED_KOL)}" in e["reasons"]
            assert follows == (e["kol_id"] == Shop.kol(Tiny.FOLLOWED_KOL))
        assert any(f"you often engage with @{Shop.kol(13)}" in e["reasons"] for e in entries)
        assert "2 friends bought this" in by_item(body)[Shop.item(Tiny.FRIENDS_ITEM)]["reasons"]
        assert by_item(body)[Shop.item(Tiny.ANN_ITEM)]["source"] == "ann"

        excluded = [Shop.item(Tiny.ANN_ITEM), Shop.item(Tiny.FRIENDS_ITEM)]
        page = await feed(client, Shop.user(Tiny.USER), limit=40, variant=LOOSE, exclude=",".join(excluded))
        assert len(page["items"]) == len(entries) - 2 and not set(excluded) & set(by_item(page))


async def test_unknown_string_user_gets_a_cold_start_page_and_their_events_shape_the_next(
    string_runs: Path, ranking_dir: Path, store_url: str
) -> None:
    async with serving(settings_for(string_runs, ranking_dir, store_url=store_url)) as client:
        cold = await feed(client, NEW_SHOPPER, limit=10, variant=LOOSE)
        assert cold["user_id"] == NEW_SHOPPER and cold["degraded"] is False and len(cold["items"]) == 10
        assert not any(e["source"] in ("ann", "similar", "followed_kol") for e in cold["items"])

        click = {"user_id": NEW_SHOPPER, "item_id": Shop.item(Tiny.ANN_ITEM), "action": "click"}
        assert (await post_events(client, click)).status_code == 202
        warm = await feed(client, NEW_SHOPPER, limit=10, variant=LOOSE)
        assert any(e["source"] == "similar" for e in warm["items"])

        bought = warm["items"][0]["item_id"]
        hide = {
            "user_id": NEW_SHOPPER,
            "item_id": Shop.item(1000),
            "kol_id": Shop.kol(Tiny.FOLLOWED_KOL),
            "post_id": Shop.post(500),
            "action": "hide",
        }
        r = await post_events(client, {"user_id": NEW_SHOPPER, "item_id": bought, "action": "buy"}, hide)
        assert r.status_code == 202 and r.json()["accepted"] == 2
        after = await feed(client, NEW_SHOPPER, limit=40, variant=LOOSE)
        assert bought not in by_item(after)
        assert after["items"] and Shop.kol(Tiny.FOLLOWED_KOL) not in {e["kol_id"] for e in after["items"]}


async def test_a_json_integer_id_is_the_same_id_as_its_decimal_string(
    string_runs: Path, ranking_dir: Path, store_url: str
) -> None:
    async with serving(settings_for(string_runs, ranking_dir, store_url=store_url)) as client:
        first = (await feed(client, "4242", limit=40, variant=LOOSE))["items"]
        a, b = first[0]["item_id"], first[1]["item_id"]
        r = await post_events(
            client,
            {"user_id": 4242, "item_id": a, "action": "buy"},  # JSON integer
            {"user_id": "4242", "item_id": b, "action": "buy"},  # its decimal string
        )
        assert r.status_code == 202
        after = await feed(client, 4242, limit=40, variant=LOOSE)
        assert after["user_id"] == "4242"
        assert not {a, b} & set(by_item(after)) and len(after["items"]) == len(first) - 2
        # another user's page is untouched: the ids did not land on a different key
        assert {a, b} <= set(by_item(await feed(client, "4243", limit=40, variant=LOOSE)))


# ------------------------------------------------------------------ validation at the boundary
@pytest.mark.parametrize(
    "event, field, problem",
    [
        ({"user_id": "u" * 129}, "user_id", "longer than 128"),
        ({"item_id": "SKU-\x00-1"}, "item_id", "non-printable"),
        ({"kol_id": "k" * 200}, "kol_id", "longer than 128"),
        ({"post_id": "p\n1"}, "post_id", "non-printable"),
        ({"to_user_id": "", "action": "share"}, "to_user_id", "empty id"),
        ({"user_id": 1.5}, "user_id", "expected a string or integer id"),
        ({"item_id": True}, "item_id", "expected a string or integer id"),
    ],
)
async def test_a_bad_event_id_is_a_422_naming_the_field(
    string_runs: Path, ranking_dir: Path, event: dict[str, Any], field: str, problem: str
) -> None:
    good = {"user_id": NEW_SHOPPER, "item_id": Shop.item(1000), "action": "click"}
    async with serving(settings_for(string_runs, ranking_dir)) as client:
        r = await post_events(client, good, {**good, **event})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert f"body events.1.{field}" in detail and problem in detail, detail
        assert "events.0" not in detail
        ok = await post_events(client, {**good, "user_id": "u" * 128, "kol_id": "élan-✓"})
        assert ok.status_code == 202, ok.text


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"user_id": "u" * 129}, "query user_id: id longer than 128"),
        ({"user_id": "ali\x07ce"}, "query user_id: id 'ali\\x07ce' has non-printable"),
        ({"user_id": ""}, "query user_id: empty id"),
        ({"user_id": "alice", "exclude": "SKU-1," + "s" * 129}, "exclude: id longer than 128"),
    ],
)
async def test_a_bad_feed_id_is_a_422_naming_the_parameter(
    string_runs: Path, ranking_dir: Path, params: dict[str, Any], needle: str
) -> None:
    async with serving(settings_for(string_runs, ranking_dir)) as client:
        r = await client.get("/v1/feed", params=params)
        assert r.status_code == 422 and needle in r.json()["detail"], r.text


async def test_the_openapi_schema_says_requests_take_strings_or_integers_and_responses_give_strings(
    string_runs: Path, ranking_dir: Path
) -> None:
    async with serving(settings_for(string_runs, ranking_dir)) as client:
        spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("item_id", "post_id", "kol_id"):
        types = {s.get("type") for s in schemas["FeedItem"]["properties"][name].get("anyOf", [])}
        types |= {schemas["FeedItem"]["properties"][name].get("type")}
        assert "string" in types and "integer" not in types, name
    assert schemas["FeedResponse"]["properties"]["user_id"]["type"] == "string"
    event = schemas["EventIn"]["properties"]
    for name in ("user_id", "item_id"):
        kinds = [s["type"] for s in event[name]["anyOf"]]
        assert kinds == ["string", "integer"] and event[name]["anyOf"][0]["maxLength"] == 128
    assert "null" in [s["type"] for s in event["kol_id"]["anyOf"]]
    feed_params = {p["name"]: p for p in spec["paths"]["/v1/feed"]["get"]["parameters"]}
    assert feed_params["user_id"]["schema"]["type"] == "string"


# ------------------------------------------------------------------ labels belong to the run
def test_a_run_with_string_ids_but_no_labels_is_refused(tmp_path: Path) -> None:
    run = make_string_id_run(tmp_path / "run")
    assert FeedModel.load(run).label("item", id_key(Shop.item(1000))) == Shop.item(1000)
    (run / A.LABELS).unlink()
    A.write_manifest(run, A.read_manifest(run))
    with pytest.raises(A.ArtifactError, match=r"string ids without a label in labels.parquet"):
        FeedModel.load(run)


async def test_kol_reports_name_creators_by_the_shop_s_ids(
    string_runs: Path, ranking_dir: Path, tmp_path: Path
) -> None:
    pq.write_table(creator_sales_events(), tmp_path / "events.parquet")
    costs = tmp_path / "costs.csv"
    costs.write_text(f"kol_id,cost\n{Shop.kol(10)},6\n")
    settings = settings_for(
        string_runs, ranking_dir, events_path=tmp_path / "events.parquet", kol_costs_path=costs
    )
    async with serving(settings) as client:
        board = (await client.get("/v1/kols/leaderboard", params={"commission": 0.1})).json()
        one = await client.get(f"/v1/kols/{Shop.kol(10)}/report", params={"commission": 0.1})
        slashed = await client.get(f"/v1/kols/{Shop.kol(11)}/report")  # studio/glow_11
        missing = await client.get("/v1/kols/nobody/report")
        bad = await client.get(f"/v1/kols/{'k' * 129}/report")
    assert [k["kol_id"] for k in board["kols"]] == [Shop.kol(10), Shop.kol(11)]
    assert one.status_code == 200 and one.json()["gmv"] == 30.0 and one.json()["roi"] == pytest.approx(0.5)
    assert (
        slashed.status_code == 200
        and slashed.json()["kol_id"] == Shop.kol(11)
        and slashed.json()["gmv"] == 5.0
    )
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    assert bad.status_code == 422 and "path kol_id" in bad.json()["detail"] and "128" in bad.json()["detail"]


# ------------------------------------------------------------------ a shop that brought only events
SHOP_ACTIONS = {"page_view": "click", "add_to_cart": "cart", "purchase": "buy"}
"""The shop's event names (others keep ours): what ``kolfeed data import --actions`` maps."""


def shop_customer(user: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://shop.example/customers/{user}"))


@pytest.fixture(scope="module")
def events_only_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run TRAINED on what an events-only shop has: one events export (customer UUIDs, SKUs, the
    shop's event names, millisecond timestamps; no creators, posts, follows or friends), imported with
    ``recsys.io.shop_import`` and trained with the world ALS pipeline."""
    import pyarrow.csv as pcsv

    from recsys.io.shop_import import ImportOptions, import_shop
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world
    from training.config import config_from_dict
    from training.run import train

    base = tmp_path_factory.mktemp("events_only")
    config = scale_config("tiny").model_copy(update={"n_users": 300, "n_items": 400, "days": 7})
    generate_world(config, 1, base / "world", scale="tiny", progress=False)
    events = pq.read_table(base / "world" / "events.parquet", columns=["ts", "user_id", "item_id", "action"])
    events = events.filter(pa.compute.not_equal(events["action"], "impression"))  # keep the file small
    renamed = {ours: theirs for theirs, ours in SHOP_ACTIONS.items()}
    export = pa.table(
        {
            "customer_id": [shop_customer(u) for u in events["user_id"].to_pylist()],
            "sku": [f"SKU-{i:05d}" for i in events["item_id"].to_pylist()],
            "event_type": [renamed.get(a, a) for a in events["action"].to_pylist()],
            "timestamp": [ts * 1000 for ts in events["ts"].to_pylist()],
        }
    )
    pcsv.write_csv(export, base / "export.csv")
    import_shop(
        ImportOptions(
            events=base / "export.csv",
            out=base / "dataset",
            columns={"user_id": "customer_id", "item_id": "sku", "action": "event_type", "ts": "timestamp"},
            actions=SHOP_ACTIONS,
        )
    )
    cfg = {
        "name": "events_only",
        "seed": 1,
        "data": {"path": str(base / "dataset"), "format": "world"},
        "model": {"name": "als", "params": {"factors": 8, "iterations": 3}},
    }
    train(config_from_dict(cfg), base / "runs", quiet=True)
    return base / "runs"


async def test_an_events_only_shop_is_served_and_the_service_says_which_signals_are_off(
    events_only_run: Path, ranking_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = FeedModel.load(A.newest_run(events_only_run))
    assert len(model.post_ids) == 0 and len(model.user_friends.indices) == 0
    trained = model.user_emb.any(axis=1)  # users without training events have zero rows (cold)
    customer = model.label("user", int(model.users.ids[trained.argmax()]))  # a customer the run knows
    assert trained.any() and customer != str(model.users.ids[trained.argmax()])  # a UUID, not a key
    with caplog.at_level(logging.WARNING, logger="serving.state"):
        async with serving(settings_for(events_only_run, ranking_dir)) as client:
            lines = [r.getMessage() for r in caplog.records if "signals off" in r.getMessage()]
            assert len(lines) == 1, lines
            assert "KOL affinity" in lines[0] and "social proof" in lines[0] and "categories" in lines[0]
            pages = [await feed(client, u, limit=20) for u in (customer, NEW_SHOPPER)]
            bought = pages[0]["items"][0]["item_id"]
            r = await post_events(client, {"user_id": customer, "item_id": bought, "action": "buy"})
            assert r.status_code == 202
            pages.append(await feed(client, customer, limit=20))
    assert [p["user_id"] for p in pages] == [customer, NEW_SHOPPER, customer]
    for page in pages:
        assert len(page["items"]) == 20 and page["degraded"] is False
        for e in page["items"]:
            assert e["item_id"].startswith("SKU-") and e["kol_id"] is None and e["post_id"] is None
            assert not any("@" in reason or "creator" in reason for reason in e["reasons"]), e
            assert "trending in unknown" not in e["reasons"]  # the import's placeholder is no category
    # a full page: the import's one placeholder category does not cap it at per_category_cap items
    assert any(e["source"] == "ann" for e in pages[0]["items"])  # the known customer is personalised
    assert not any(e["source"] == "ann" for e in pages[1]["items"])  # the new one gets a cold start
    assert bought not in {e["item_id"] for e in pages[2]["items"]}

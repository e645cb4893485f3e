"""String ids (UUID users, SKU items, creator handles) through training and the run directory, and
the retraining loop's intake of users and items first seen in the service's event log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys import artifacts as art
from recsys.ids import id_key
from tests.string_worlds import LABEL_OF, string_key, stringify_world
from tests.world_fixtures import make_tiny_world
from training.config import config_from_dict
from training.run import reevaluate, reevaluate_pipeline, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def int_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world"), 1)


@pytest.fixture(scope="module")
def str_world(int_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stringify_world(int_world, tmp_path_factory.mktemp("strworld"), fmt="csv")


def _cfg(world: Path, model: str = "popularity", **extra: object) -> dict[str, object]:
    params = {"factors": 8, "iterations": 3} if model == "als" else {}
    return {
        "name": f"s_{model}",
        "seed": 3,
        "data": {"path": str(world), "format": "world", **extra},
        "model": {"name": model, "params": params},
        "affinity": {"top_n": 10},
    }


def test_a_world_with_string_ids_trains_into_a_run_directory_with_its_labels(
    int_world: Path, str_world: Path, tmp_path: Path
) -> None:
    by_int = train(config_from_dict(_cfg(int_world, "als")), tmp_path / "a", quiet=True)
    by_str = train(config_from_dict(_cfg(str_world, "als")), tmp_path / "b", quiet=True)
    stats = [json.loads((r.run_dir / art.METRICS).read_text()) for r in (by_int, by_str)]
    for key in ("data_n_users", "data_n_items", "data_n_kols", "data_train_nnz", "data_test_nnz"):
        assert stats[0][key] == stats[1][key], key
    assert by_str.metrics["recall@20"] > 0.0

    run = by_str.run_dir
    manifest = art.verify_run_dir(run)
    assert art.LABELS in manifest.files
    labels = art.load_labels(run / art.LABELS)
    int_items = art.load_array(by_int.run_dir / art.ITEM_IDS)
    str_items = art.load_array(run / art.ITEM_IDS)
    assert sorted(labels["item"][int(k)] for k in str_items) == sorted(
        LABEL_OF["item"](int(k)) for k in int_items
    )
    int_users = art.load_array(by_int.run_dir / art.USER_IDS)
    assert set(art.load_array(run / art.USER_IDS).tolist()) == {string_key("user", int(k)) for k in int_users}
    assert {labels["user"][string_key("user", int(k))] for k in int_users[:5]} == {
        LABEL_OF["user"](int(k)) for k in int_users[:5]
    }
    kols = art.load_array(run / art.KOL_IDS)
    assert all(labels["kol"][int(k)].startswith("@creator") for k in kols)
    posts = pq.read_table(run / "catalog/posts.parquet").column("post_id").to_pylist()
    assert all(labels["post"][k].startswith("post-") for k in posts)
    # an integer world's run has a labels file too, with nothing in it
    assert all(not v for v in art.load_labels(by_int.run_dir / art.LABELS).values())

    again, recorded, same_data = reevaluate(run)
    assert same_data and again["recall@20"] == pytest.approx(recorded["recall@20"])
    served, full = reevaluate_pipeline(run, "default", REPO / "configs/ranking", quiet=True)
    assert full["recall@20"] == pytest.approx(recorded["recall@20"])
    assert 0.0 < served["recall@20"] <= 1.0  # the served pipeline ranks the string-id catalogue


def write_log(log_dir: Path, events: list[object]) -> None:
    from features.eventlog import EventLog

    log = EventLog(log_dir)
    log.append_batch(events)  # type: ignore[arg-type]
    log.close()


def test_retraining_from_the_log_takes_in_new_users_and_skips_items_missing_from_the_catalogue(
    str_world: Path, tmp_path: Path
) -> None:
    from features.base import StoreEvent

    newcomer = id_key("3f2b8c1e-1d7a-4b0e-9a55-0c2d9e1f4a7b")
    friend = id_key("friend-of-the-newcomer")
    start = 2_000_000_000.0
    items = [string_key("item", i) for i in (3, 5, 8, 13)]
    logged = [
        StoreEvent(ts=start + i, user_id=newcomer, item_id=item, action="click")
        for i, item in enumerate(items)
    ]
    logged += [
        StoreEvent(ts=start + 10, user_id=newcomer, item_id=items[0], action="buy", value=12.0),
        StoreEvent(ts=start + 11, user_id=newcomer, item_id=items[1], action="share", to_user_id=friend),
        StoreEvent(ts=start + 12, user_id=newcomer, item_id=id_key("SKU-NOT-LISTED"), action="click"),
        StoreEvent(
            ts=start + 13, user_id=newcomer, item_id=items[2], action="click", kol_id=id_key("@nobody")
        ),
    ]
    log_dir = tmp_path / "eventlog"
    write_log(log_dir, logged)
    result = train(
        config_from_dict(_cfg(str_world, events_log=str(log_dir), test_fraction=0.2)),
        tmp_path / "runs",
        quiet=True,
    )
    stats = json.loads((result.run_dir / art.METRICS).read_text())
    assert stats["data_log_events_read"] == len(logged)
    assert stats["data_log_events_kept"] == len(logged) - 1
    assert stats["data_log_skipped_unknown_item"] == 1
    assert stats["data_log_unknown_kol_dropped"] == 1
    assert stats["data_log_new_users"] == 2
    users = art.load_array(result.run_dir / art.USER_IDS)
    assert newcomer in users and friend in users
    assert id_key("SKU-NOT-LISTED") not in art.load_array(result.run_dir / art.ITEM_IDS)
    log_text = (result.run_dir / art.LOG).read_text()
    assert "skipped 1 (item not in the catalogue)" in log_text and "2 new users" in log_text


RECBOLE_USERS = [LABEL_OF["user"](u) for u in range(40)]
RECBOLE_ITEMS = [LABEL_OF["item"](i) for i in range(30)]


@pytest.fixture(scope="module")
def recbole_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs trained from a RecBole ``.inter`` file whose tokens are UUIDs and SKUs."""
    root = tmp_path_factory.mktemp("recbole")
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u, user in enumerate(RECBOLE_USERS):
        for t, i in enumerate(rng.choice(30, size=8, replace=False)):
            lines.append(f"{user}\t{RECBOLE_ITEMS[(int(i) + u) % 30]}\t{t}")
    (root / "shop.inter").write_text("\n".join(lines) + "\n")
    cfg = {
        "name": "recbole_strings",
        "seed": 1,
        "data": {"path": str(root / "shop.inter"), "format": "recbole"},
        "model": {"name": "als", "params": {"factors": 4, "iterations": 2}},
    }
    train(config_from_dict(cfg), root / "runs", quiet=True)
    return root / "runs"


def test_a_recbole_file_with_string_tokens_trains_exports_and_evaluates(recbole_runs: Path) -> None:
    run = art.newest_run(recbole_runs)
    labels = art.load_labels(run / art.LABELS)
    assert sorted(labels["user"][int(k)] for k in art.load_array(run / art.USER_IDS)) == sorted(RECBOLE_USERS)
    assert sorted(labels["item"][int(k)] for k in art.load_array(run / art.ITEM_IDS)) == sorted(RECBOLE_ITEMS)
    again, recorded, same_data = reevaluate(run)
    assert same_data and again["recall@20"] == pytest.approx(recorded["recall@20"])


async def test_a_recbole_run_with_string_tokens_serves_feeds_in_the_shop_s_ids(
    recbole_runs: Path, tmp_path: Path
) -> None:
    from tests.ranking_fixtures import copy_shipped_variants
    from tests.service_harness import feed, post_events
    from tests.string_id_fixtures import serving, settings_for

    settings = settings_for(recbole_runs, copy_shipped_variants(tmp_path / "ranking"))
    async with serving(settings) as client:
        user = RECBOLE_USERS[3]
        page = await feed(client, user, limit=10)
        assert page["user_id"] == user and len(page["items"]) == 10
        assert {e["item_id"] for e in page["items"]} <= set(RECBOLE_ITEMS)
        assert any(e["source"] == "ann" for e in page["items"])  # a trained user: the model's page
        bought = page["items"][0]["item_id"]
        r = await post_events(client, {"user_id": user, "item_id": bought, "action": "buy"})
        assert r.status_code == 202, r.text
        again = await feed(client, user, limit=10)
        assert bought not in {e["item_id"] for e in again["items"]}


def test_a_recbole_token_that_is_not_an_id_names_its_line(tmp_path: Path) -> None:
    from recsys.datasets.recbole import load_recbole
    from recsys.io import DatasetError

    path = tmp_path / "bad.inter"
    path.write_text("user_id:token\titem_id:token\nu1\ta\nu2\t" + "x" * 129 + "\n")
    with pytest.raises(DatasetError, match=r"bad\.inter, line 3, column 'item_id': .*longer than 128"):
        load_recbole(path)


def test_refit_on_all_events_gives_a_user_first_seen_in_the_log_an_embedding(
    str_world: Path, tmp_path: Path
) -> None:
    from features.base import StoreEvent

    newcomer = id_key("b7e1d1a0-5f3c-4c1e-8d8e-2f0a9c3b1e55")
    items = [string_key("item", i) for i in (2, 4, 6, 9, 11)]
    logged = [
        StoreEvent(ts=2_000_000_000.0 + i, user_id=newcomer, item_id=item, action="click")
        for i, item in enumerate(items)
    ]
    write_log(tmp_path / "log", logged)
    runs = {}
    for refit in (False, True):
        cfg = _cfg(str_world, "als", events_log=str(tmp_path / "log"))
        cfg["export"] = {"refit_on_all_events": refit}
        runs[refit] = train(config_from_dict(cfg), tmp_path / f"runs-{refit}", quiet=True)
    rows = {}
    for refit, result in runs.items():
        users = art.load_array(result.run_dir / art.USER_IDS)
        rows[refit] = art.load_array(result.run_dir / art.USER_EMB)[int(np.flatnonzero(users == newcomer)[0])]
    # held out (the newest events go to test), the newcomer has no training data and no taste
    assert np.abs(rows[False]).max() == pytest.approx(0.0, abs=1e-6)
    assert np.abs(rows[True]).max() > 1e-3
    stats = json.loads((runs[True].run_dir / art.METRICS).read_text())
    assert stats["data_n_test_events"] >= len(logged)  # metrics describe the held-out evaluation
    assert "stage refit: done" in (runs[True].run_dir / art.LOG).read_text()
    assert runs[True].metrics["recall@20"] == pytest.approx(runs[False].metrics["recall@20"])


def test_an_unknown_string_id_is_named_as_the_data_spells_it(str_world: Path, tmp_path: Path) -> None:
    import shutil

    from recsys.graphs import GraphError

    world = tmp_path / "world"
    shutil.copytree(str_world, world)
    follows = (world / "follows.csv").read_text()
    (world / "follows.csv").write_text(follows + f"{LABEL_OF['user'](1)},@ghost,1700000000\n")
    with pytest.raises(GraphError, match=r"follows\.kol_id '@ghost' is not in the id map \(60 known\)"):
        train(config_from_dict(_cfg(world)), tmp_path / "runs", quiet=True)

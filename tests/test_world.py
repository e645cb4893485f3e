"""World generator: determinism, file layout and schemas, chronological split, truth API, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from recsys.schema import ACTION_NAMES, TABLES
from recsys.world.config import WorldError, scale_config
from recsys.world.generate import TABLE_FILES, generate_world
from recsys.world.truth import GroundTruth, TruthParams
from tests.service_harness import cli_app
from tests.world_fixtures import make_tiny_world

SMALL_TINY = {"n_users": 400, "days": 8, "n_items": 600, "n_kols": 30}


def _hashes(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    make_tiny_world(out, 1)
    return out


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = scale_config("tiny", SMALL_TINY)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_world(cfg, seed, tmp_path / name, progress=False)
    a, b, c = (_hashes(tmp_path / n) for n in "abc")
    assert len(a) > 20
    assert a == b
    for t in TABLE_FILES:
        assert a[f"{t}.parquet"] != c[f"{t}.parquet"], t


def test_every_table_matches_its_schema(world: Path) -> None:
    for name in TABLE_FILES:
        schema = pq.read_schema(world / f"{name}.parquet")
        assert schema.remove_metadata().equals(TABLES[name].arrow_schema()), name
    for part in ("train", "test"):
        assert pq.read_schema(world / "split" / f"{part}.parquet").equals(TABLES["events"].arrow_schema())


def test_events_are_consistent_with_catalog(world: Path) -> None:
    ev = pq.read_table(world / "events.parquet")
    posts = pq.read_table(world / "posts.parquet")
    items = pq.read_table(world / "items.parquet")
    actions = set(pc.unique(ev["action"]).to_pylist())
    assert actions == set(ACTION_NAMES)  # every action, including hide, occurs
    ts = ev["ts"].to_numpy()
    assert np.all(np.diff(ts) >= 0)
    post = ev["post_id"].to_numpy()
    assert ev["post_id"].null_count == 0 and ev["kol_id"].null_count == 0
    assert np.array_equal(posts["kol_id"].to_numpy()[post], ev["kol_id"].to_numpy())
    assert np.array_equal(posts["item_id"].to_numpy()[post], ev["item_id"].to_numpy())
    # a post is only shown after it was published
    assert np.all(posts["created_at"].to_numpy()[post] <= ts)
    is_buy = pc.equal(ev["action"], "buy").to_numpy(zero_copy_only=False)
    value = ev["value"].to_numpy(zero_copy_only=False)
    assert ev["value"].null_count == ev.num_rows - is_buy.sum()
    price = items["price"].to_numpy()[ev["item_id"].to_numpy()]
    assert np.allclose(value[is_buy], price[is_buy])
    is_share = pc.equal(ev["action"], "share").to_numpy(zero_copy_only=False)
    assert ev["to_user_id"].null_count == ev.num_rows - is_share.sum()
    assert pc.all(pc.match_substring_regex(ev["request_id"], r"^[rs]\d+$")).as_py()


def test_friends_are_symmetric_and_homophilous(world: Path) -> None:
    fr = pq.read_table(world / "friends.parquet")
    a, b = fr["user_id"].to_numpy(), fr["friend_id"].to_numpy()
    assert not np.any(a == b)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == set(zip(b.tolist(), a.tolist(), strict=True))
    seg = np.array(pq.read_table(world / "users.parquet")["segment"].to_pylist())
    same = float(np.mean(seg[a] == seg[b]))
    shares = np.unique(seg, return_counts=True)[1] / seg.size
    assert same > float(np.sum(shares**2)) + 0.3  # far above random mixing
    assert 3.0 < a.size / seg.size < 9.0  # small average degree


def test_split_is_chronological_and_complete(world: Path) -> None:
    ev = pq.read_table(world / "events.parquet")
    train = pq.read_table(world / "split" / "train.parquet")
    test = pq.read_table(world / "split" / "test.parquet")
    info = json.loads((world / "split" / "split.json").read_text())
    assert info["n_train"] == train.num_rows and info["n_test"] == test.num_rows
    assert train.num_rows + test.num_rows == ev.num_rows
    assert pc.max(train["ts"]).as_py() < info["cut_ts"] <= pc.min(test["ts"]).as_py()
    assert pa.concat_tables([train, test]).equals(ev)
    assert 0.1 < test.num_rows / ev.num_rows < 0.35
    meta = json.loads((world / "world.json").read_text())
    assert meta["counts"]["events"] == ev.num_rows and meta["seed"] == 1 and meta["scale"] == "tiny"


def test_ground_truth_loads_and_answers(world: Path) -> None:
    gt = GroundTruth.load(world)
    assert gt.n_users == 1000 and gt.kol_vertical_mask.any(axis=1).all()
    assert np.allclose(gt.user_pref.sum(axis=1), 1.0, atol=1e-5)
    rng = np.random.default_rng(0)
    u = rng.integers(0, gt.n_users, 500)
    i = rng.integers(0, gt.n_items, 500)
    k = rng.integers(0, gt.n_kols, 500)
    for p in (
        gt.click_prob(u, i, k),
        gt.buy_prob(u, i, k, np.zeros(500)),
        gt.share_prob(u, i, k),
        gt.hide_prob(u, i, k),
        gt.cart_prob(u, i, k),
    ):
        assert p.shape == (500,) and np.all((p >= 0) & (p <= 1))
    assert np.all(gt.buy_prob(u, i, k, np.full(500, 3)) >= gt.buy_prob(u, i, k, np.zeros(500)))
    assert np.all(gt.click_prob(u, i, k, from_friend=np.ones(500)) > gt.click_prob(u, i, k))
    f = gt.pick_share_friend(rng, u)
    for uu, ff in zip(u[:50], f[:50], strict=True):
        assert ff == -1 if gt.friends(int(uu)).size == 0 else ff in set(gt.friends(int(uu)).tolist())
    with pytest.raises(WorldError, match="item id out of range"):
        gt.click_prob([0], [gt.n_items], [0])
    with pytest.raises(WorldError, match="missing"):
        GroundTruth.load(world / "nope")


def test_events_follow_the_truth_functions(world: Path) -> None:
    """Feed clicks and hides match the sums of GroundTruth probabilities (known answer, 4 sd)."""
    gt = GroundTruth.load(world)
    ev = pq.read_table(world / "events.parquet")
    feed = pc.starts_with(ev["request_id"], "r")
    act = ev["action"].to_numpy(zero_copy_only=False)
    imp = pc.and_(feed, pc.equal(ev["action"], "impression")).to_numpy(zero_copy_only=False)
    u, i, k = (ev[c].to_numpy()[imp] for c in ("user_id", "item_id", "kol_id"))
    pcl = gt.click_prob(u, i, k)
    q = (1 - pcl) * gt.hide_prob(u, i, k)
    feed_np = feed.to_numpy(zero_copy_only=False)
    for observed, p in ((np.sum(feed_np & (act == "click")), pcl), (np.sum(feed_np & (act == "hide")), q)):
        assert abs(observed - p.sum()) < 4 * np.sqrt(np.sum(p * (1 - p))) + 1


def test_zero_buy_probability_gives_no_buys(tmp_path: Path) -> None:
    generate_world(
        scale_config("tiny", SMALL_TINY), 2, tmp_path, params=TruthParams(buy_bias=-60.0), progress=False
    )
    ev = pq.read_table(tmp_path / "events.parquet")
    assert pc.sum(pc.equal(ev["action"], "buy")).as_py() == 0


def test_world_without_follows_or_friends_still_generates(tmp_path: Path) -> None:
    cfg = scale_config("tiny", {**SMALL_TINY, "mean_follows": 0, "mean_friends": 0})
    report = generate_world(cfg, 4, tmp_path, progress=False)
    assert report.counts["follows"] == 0 and report.counts["friends"] == 0 and report.counts["events"] > 1000
    ev = pq.read_table(tmp_path / "events.parquet")
    assert pc.sum(pc.equal(ev["action"], "share")).as_py() == 0  # nobody to share with


def test_config_rejects_unknown_scale_and_key() -> None:
    with pytest.raises(WorldError, match="unknown scale 'huge'"):
        scale_config("huge")
    with pytest.raises(WorldError, match="'n_userz'"):
        scale_config("tiny", {"n_userz": 3})
    with pytest.raises(WorldError, match="n_users"):
        scale_config("tiny", {"n_users": 0})


def _cli() -> typer.Typer:
    from kolfeed import commands_world

    return cli_app(commands_world)


def test_cli_writes_a_world_and_reports_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "w"
    sets = [f"--set={k}={v}" for k, v in SMALL_TINY.items()]
    res = runner.invoke(
        _cli(), ["world", "--scale", "tiny", "--seed", "3", "--out", str(out), "--no-progress", *sets]
    )
    assert res.exit_code == 0, res.output
    assert (out / "world.json").exists() and (out / "truth" / "params.json").exists()
    bad = runner.invoke(_cli(), ["world", "--scale", "huge", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown scale 'huge'" in bad.output
    bad = runner.invoke(_cli(), ["world", "--set", "days", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "key=value" in bad.output


def test_bench_world_writes_json_and_plot(tmp_path: Path) -> None:
    from kolfeed.bench.world import run

    res = run(["tiny"], 1, tmp_path)
    row = res["rows"][0]
    assert row["events"] > 10_000 and row["peak_rss_mb"] > 0
    assert (tmp_path / "world.json").exists() and (tmp_path / "world.png").stat().st_size > 1000

"""End-to-end runs on a tiny generated world: run dir layout, manifest, versions, atomicity, eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys import artifacts as art
from tests.world_fixtures import make_tiny_world
from training.config import ConfigError, config_from_dict
from training.run import TrainError, list_runs, reevaluate, train


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world"), 1)


def _cfg(world: Path, model: str = "popularity", **params: object) -> dict[str, object]:
    return {
        "name": f"t_{model}",
        "seed": 3,
        "data": {"path": str(world), "format": "world"},
        "model": {"name": model, "params": dict(params)},
        "affinity": {"top_n": 10},
    }


def test_run_directory_verifies_and_versions_increase(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    r1 = train(config_from_dict(_cfg(tiny_world)), out, quiet=True)
    r2 = train(config_from_dict(_cfg(tiny_world, "als", factors=8, iterations=3)), out, quiet=True)
    assert (r1.version, r2.version) == (1, 2)
    for r in (r1, r2):
        m = art.verify_run_dir(r.run_dir)
        for name in (
            art.USER_EMB,
            art.ITEM_EMB,
            art.KOL_EMB,
            art.USER_IDS,
            art.ITEM_IDS,
            art.KOL_IDS,
            art.ITEM_POPULARITY,
            art.INDEX,
            art.METRICS,
            art.CURVE,
            art.LOG,
        ):
            assert name in m.files, name
        assert any(f.startswith("model/") for f in m.files)
        for t in (
            "catalog/items.parquet",
            "catalog/kols.parquet",
            "catalog/posts.parquet",
            "social/follows.parquet",
            "social/friends.parquet",
            "social/share_edges.parquet",
            "social/user_kol_affinity.parquet",
            "social/kol_category_fit.parquet",
        ):
            assert t in m.files, t
        assert m.data_fingerprint and len(m.data_fingerprint) == 64
        assert m.config["model"]["name"] in ("popularity", "als")
        assert m.config["data"]["path"] == str(tiny_world)
        assert 0.0 <= m.metrics["recall@20"] <= 1.0
        assert "buy/recall@20" in m.metrics
        assert "numpy" in m.libraries
    # Shapes line up with the id maps.
    d = r2.run_dir
    users = art.load_array(d / art.USER_IDS)
    items = art.load_array(d / art.ITEM_IDS)
    assert art.load_array(d / art.USER_EMB).shape == (len(users), 8)
    assert art.load_array(d / art.ITEM_EMB).shape == (len(items), 8)
    assert art.load_array(d / art.KOL_EMB).shape[1] == 8
    aff = pq.read_table(d / "social/user_kol_affinity.parquet")
    assert aff.column_names == ["user_id", "kol_id", "affinity"]
    assert np.all(np.bincount(aff.column("user_id").to_numpy() - users.min()) <= 10)
    rows = list_runs(out)
    assert [r["version"] for r in rows] == [1, 2]
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_export_keeps_each_users_neighbours_when_asked(tiny_world: Path, tmp_path: Path) -> None:
    from recsys import user_neighbours
    from recsys.index import search_ids
    from recsys.ranking.feed_model import FeedModel

    cfg = _cfg(tiny_world, "als", factors=8, iterations=3)
    plain = train(config_from_dict(cfg), tmp_path / "runs", quiet=True)
    assert user_neighbours.TABLE not in art.verify_run_dir(plain.run_dir).files  # off by default
    cfg["export"] = {"user_neighbours": 12}
    run = train(config_from_dict(cfg), tmp_path / "runs", quiet=True)
    assert user_neighbours.TABLE in art.verify_run_dir(run.run_dir).files
    m = FeedModel.load(run.run_dir)
    assert m.user_neighbours is not None and m.user_neighbours.shape == (len(m.users), 12)
    warm = np.flatnonzero(m.user_emb.any(axis=1))
    cold = np.flatnonzero(~m.user_emb.any(axis=1))
    assert len(warm) and (m.user_neighbours[cold] == -1).all()
    for r in warm[:20]:
        assert m.user_neighbours[r].tolist() == search_ids(m.index, m.user_emb[r], 12)[0].tolist()


def test_kol_category_fit_rows_sum_to_one(tiny_world: Path, tmp_path: Path) -> None:
    r = train(config_from_dict(_cfg(tiny_world)), tmp_path, quiet=True)
    fit = pq.read_table(r.run_dir / "social/kol_category_fit.parquet")
    kol = fit.column("kol_id").to_numpy()
    vals = fit.column("fit").to_numpy()
    sums = np.bincount(np.unique(kol, return_inverse=True)[1], weights=vals)
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


@pytest.mark.parametrize("stage", ["load", "fit", "evaluate", "export"])
def test_failed_run_leaves_no_run_directory(tiny_world: Path, tmp_path: Path, stage: str) -> None:
    out = tmp_path / "runs"
    with pytest.raises(TrainError, match="injected"):
        train(config_from_dict(_cfg(tiny_world)), out, quiet=True, fail_after=stage)
    assert list(out.iterdir()) == []
    assert art.next_version(out) == 1


def test_bad_model_param_named_before_any_work(tiny_world: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.factorz"):
        train(config_from_dict(_cfg(tiny_world, "als", factorz=3)), tmp_path, quiet=True)
    with pytest.raises(ConfigError, match=r"model\.name"):
        train(config_from_dict(_cfg(tiny_world, "nope")), tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_eval_recomputes_the_same_metrics(tiny_world: Path, tmp_path: Path) -> None:
    r = train(config_from_dict(_cfg(tiny_world, "als", factors=8, iterations=3)), tmp_path, quiet=True)
    metrics, recorded, same = reevaluate(r.run_dir)
    assert same
    for key, value in metrics.items():
        assert value == pytest.approx(recorded[key], abs=1e-6), key
    # A corrupted file is refused.
    emb = r.run_dir / art.ITEM_EMB
    emb.write_bytes(emb.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(art.ArtifactError, match="checksum"):
        reevaluate(r.run_dir)


def test_clicks_only_changes_training_but_not_the_test_set(tiny_world: Path, tmp_path: Path) -> None:
    from training.data import prepare

    full = prepare(config_from_dict(_cfg(tiny_world)))
    clicks = prepare(config_from_dict({**_cfg(tiny_world), "graphs": {"behaviours": ["click"]}}))
    assert clicks.interactions.train.nnz <= full.interactions.train.nnz
    assert (full.interactions.test != clicks.interactions.test).nnz == 0
    assert (full.interactions.extra_test["buy"] != clicks.interactions.extra_test["buy"]).nnz == 0
    assert (full.seen != clicks.seen).nnz == 0


def test_cli_train_eval_runs(tiny_world: Path, tmp_path: Path) -> None:
    from kolfeed.cli import _register, app

    _register()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(_cfg(tiny_world, "als", factors=4, iterations=2)))
    runner = CliRunner()
    out = tmp_path / "runs"
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--quiet", "--set", "name=cli"])
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert Path(last).is_dir() and Path(last).parent == out
    res = runner.invoke(app, ["eval", last])
    assert res.exit_code == 0, res.output
    assert "recall@20" in res.stdout
    res = runner.invoke(app, ["runs", "--out", str(out)])
    assert res.exit_code == 0 and "als" in res.stdout and "cli" in res.stdout
    bad = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--set", "model.parms.x=1"])
    assert bad.exit_code == 1
    assert "unknown key 'model.parms'" in bad.stderr
    missing = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--set", f"data.path={tmp_path}/no"])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert len(list_runs(out)) == 1

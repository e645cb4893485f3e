"""Every shipped training config runs end to end on tiny data and yields a verifying run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys import artifacts as art
from tests.world_fixtures import make_tiny_world
from training.config import load_config
from training.run import train

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))

# Sizes shrunk for tiny data; everything else comes from the shipped file.
SHRINK: dict[str, list[str]] = {
    "graphfilter": ["model.params.factors=8"],
    "als": ["model.params.factors=8", "model.params.iterations=3"],
    "bpr": ["model.params.factors=8", "model.params.iterations=5"],
    "popularity": [],
}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world"), 2)


@pytest.fixture(scope="module")
def tiny_lightgcn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-written LightGCN split: 8 users, 12 items."""
    d = tmp_path_factory.mktemp("lightgcn")
    train = [
        "0 0 1 2 3",
        "1 1 2 4 5",
        "2 3 4 6",
        "3 5 6 7 8",
        "4 7 8 9",
        "5 0 9 10 11",
        "6 2 4 10",
        "7 1 3 11",
    ]
    test = ["0 4", "1 6", "2 5", "3 9", "4 10", "5 1", "6 11", "7 0"]
    (d / "train.txt").write_text("\n".join(train) + "\n")
    (d / "test.txt").write_text("\n".join(test) + "\n")
    return d


def test_configs_are_shipped() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "world_popularity.yaml",
        "world_als.yaml",
        "world_bpr.yaml",
        "world_graphfilter.yaml",
        "gowalla.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_runs(path: Path, tiny_world: Path, tiny_lightgcn: Path, tmp_path: Path) -> None:
    shipped = load_config(path, cwd=tmp_path)
    data = tiny_world if shipped.data.format == "world" else tiny_lightgcn
    cfg = load_config(path, [f"data.path={data}", *SHRINK[shipped.model.name]], cwd=tmp_path)
    result = train(cfg, tmp_path / "runs", quiet=True)
    manifest = art.verify_run_dir(result.run_dir)
    assert manifest.version == 1
    assert manifest.config["name"] == shipped.name
    for key in ("recall@20", "ndcg@20", "fit_seconds"):
        assert key in manifest.metrics
    assert 0.0 <= manifest.metrics["recall@20"] <= 1.0
    if shipped.data.format == "world":
        assert "buy/recall@20" in manifest.metrics
        assert art.KOL_EMB in manifest.files

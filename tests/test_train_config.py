"""The typed training config: unknown keys are named, overrides parse as YAML scalars."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, apply_overrides, load_config, parse_override


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


BASE = """
name: t
data: {path: data/w, format: world}
model: {name: als, params: {factors: 8}}
"""


def test_defaults_and_relative_path_resolved(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE), cwd=tmp_path)
    assert cfg.data.path == str((tmp_path / "data/w").resolve())
    assert cfg.graphs.weights["buy"] == 6.0 and cfg.graphs.weights["hide"] == -4.0
    assert cfg.eval.ks == [20]
    assert cfg.export.index_factory == "Flat"
    assert cfg.model.params == {"factors": 8}


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "model: {name: popularity}\n"), cwd=tmp_path)
    assert cfg.name == "run"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "modle: {}\n", "modle"),
        (BASE.replace("format: world", "format: world, pth: x"), "data.pth"),
        (BASE + "eval: {ks: [20], per_behavior: true}\n", "eval.per_behavior"),
        (BASE + "graphs: {halflife: 3}\n", "graphs.halflife"),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown key '{key}'"):
        load_config(_write(tmp_path, text), cwd=tmp_path)


def test_unknown_action_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"graphs\.weights.*'purchase'"):
        load_config(_write(tmp_path, BASE + "graphs: {weights: {purchase: 2}}\n"), cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"graphs\.behaviours.*'clik'"):
        load_config(_write(tmp_path, BASE + "graphs: {behaviours: [clik]}\n"), cwd=tmp_path)


def test_bad_format_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.format"):
        load_config(_write(tmp_path, BASE.replace("format: world", "format: csv")), cwd=tmp_path)


def test_overrides_apply_as_yaml_scalars(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, BASE),
        [
            "model.params.factors=32",
            "graphs.behaviours=[click]",
            "graphs.half_life_days=7.5",
            "eval.per_behaviour=false",
            "data.path=/abs/world",
            "graphs.weights.buy=10",
        ],
        cwd=tmp_path,
    )
    assert cfg.model.params["factors"] == 32
    assert cfg.graphs.behaviours == ["click"]
    assert cfg.graphs.half_life_days == 7.5
    assert cfg.eval.per_behaviour is False
    assert cfg.data.path == "/abs/world"
    assert cfg.graphs.weights["buy"] == 10.0 and cfg.graphs.weights["click"] == 1.0


def test_bad_overrides_error_clearly(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"unknown key 'model.parms'"):
        load_config(path, ["model.parms.factors=3"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"expected key.path=value"):
        load_config(path, ["model.name"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"seed: Input should be a valid integer"):
        load_config(path, ["seed.x=1"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"name is not a section"):
        load_config(path, ["name.x=1"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"eval\.ks"):
        load_config(path, ["eval.ks=[0]"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        parse_override("a=[1, 2")


def test_apply_overrides_does_not_mutate_input() -> None:
    raw = {"model": {"name": "als"}}
    out = apply_overrides(raw, ["model.name=bpr"])
    assert raw["model"]["name"] == "als" and out["model"]["name"] == "bpr"


def test_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_data_options_only_for_benchmark_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data: .*'world' takes no options"):
        load_config(_write(tmp_path, BASE), ["data.options.test_ratio=0.2"], cwd=tmp_path)
    cfg = load_config(
        _write(tmp_path, BASE), ["data.format=recbole", "data.options.test_ratio=0.2"], cwd=tmp_path
    )
    assert cfg.data.options == {"test_ratio": 0.2}

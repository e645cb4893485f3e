"""Property tests: whatever a config file or dict holds, the loaders return a valid config or raise the
project's own config error (naming the file/key), never another exception.

Covered: training run configs (dict, YAML file, ``--set`` overrides), ranking variants (dict, YAML
file, directory), experiment configs (dict, YAML file). Inputs are random JSON-like trees, random
YAML text, and shipped configs with random keys replaced, added or removed (the realistic typo).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.experiments.config import ExperimentConfigError, experiment_from_dict, load_experiment
from recsys.models.params import ModelConfigError
from recsys.ranking.variants import VariantError, load_variant, load_variants, variant_from_dict
from training.config import ConfigError, apply_overrides, config_from_dict, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _shipped(folder: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "configs" / folder).glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert isinstance(raw, dict), path
        out.append(raw)
    return out


TRAIN = _shipped("train")
VARIANTS = _shipped("ranking")
EXPERIMENTS = _shipped("experiments")

KEYS = st.sampled_from(
    [
        "name",
        "seed",
        "data",
        "path",
        "format",
        "graphs",
        "model",
        "params",
        "eval",
        "ks",
        "export",
        "weights",
        "candidates",
        "arms",
        "share",
        "variant",
        "salt",
        "control",
        "start",
        "stop",
        "x",
        "",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["Flat", "als", "click", "buy", "2024-01-01T00:00:00Z", "-1", "1e309", "nan"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), children, max_size=5),
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, bases: list[dict[str, Any]]) -> Any:
    """A shipped config with a few random edits at random depths (replace / add / delete a key)."""
    raw = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 4))):
        node: Any = raw
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node, key=str)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            continue
        op = draw(st.sampled_from(["replace", "add", "delete"]))
        if op == "add" or not node:
            node[draw(st.one_of(KEYS, st.text(max_size=6)))] = draw(TREES)
        elif op == "replace":
            node[draw(st.sampled_from(sorted(node, key=str)))] = draw(TREES)
        else:
            del node[draw(st.sampled_from(sorted(node, key=str)))]
    return raw


YAML_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab:-[]{}#&*!|>'\"%@`, \n\t0123.xé")), max_size=60),
    TREES.map(lambda t: yaml.safe_dump(t, allow_unicode=True)),
    mutated(TRAIN).map(lambda t: yaml.safe_dump(t, allow_unicode=True)),
)


@contextmanager
def _file(text: str, name: str = "cfg.yaml") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kolfeed-props-") as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        yield path


# ------------------------------------------------------------------ training configs
@SETTINGS
@given(st.one_of(TREES, mutated(TRAIN)))
def test_train_config_from_any_dict(raw: Any) -> None:
    if not isinstance(raw, dict):
        raw = {"name": raw}
    try:
        cfg = config_from_dict(raw, source="props")
    except (ConfigError, ModelConfigError) as exc:
        assert str(exc)
    else:
        assert cfg.name


@SETTINGS
@given(YAML_TEXT)
def test_train_config_from_any_yaml_file(text: str) -> None:
    with _file(text) as path:
        try:
            load_config(path, cwd=path.parent)
        except (ConfigError, ModelConfigError) as exc:
            assert str(exc)


@SETTINGS
@given(st.lists(st.text(max_size=20), max_size=4))
def test_overrides_never_crash(overrides: list[str]) -> None:
    try:
        for text in overrides:
            parse_override(text)
        out = apply_overrides(copy.deepcopy(TRAIN[0]), overrides)
        config_from_dict(out, source="props")
    except (ConfigError, ModelConfigError) as exc:
        assert str(exc)


def test_a_known_typo_is_named() -> None:
    raw = copy.deepcopy(TRAIN[0])
    raw.setdefault("graphs", {})["behavoirs"] = ["click"]
    try:
        config_from_dict(raw, source="typo.yaml")
    except ConfigError as exc:
        assert "behavoirs" in str(exc) and "typo.yaml" in str(exc)
    else:
        raise AssertionError("a misspelt key was accepted")


# ------------------------------------------------------------------ ranking variants
@SETTINGS
@given(st.one_of(TREES, mutated(VARIANTS)))
def test_variant_from_any_dict(raw: Any) -> None:
    try:
        v = variant_from_dict(raw, source="props.yaml", name="props")
    except VariantError as exc:
        assert "props.yaml" in str(exc)
    else:
        assert v.name and v.per_kol_cap >= 1


@SETTINGS
@given(st.one_of(YAML_TEXT, mutated(VARIANTS).map(yaml.safe_dump)))
def test_variant_from_any_yaml_file(text: str) -> None:
    with _file(text, "variant.yaml") as path:
        try:
            load_variant(path)
            load_variants(path.parent)
        except VariantError as exc:
            assert str(path) in str(exc)


# ------------------------------------------------------------------ experiments
@SETTINGS
@given(st.one_of(TREES, mutated(EXPERIMENTS)))
def test_experiment_from_any_dict(raw: Any) -> None:
    try:
        exp = experiment_from_dict(raw, source="props.yaml")
    except ExperimentConfigError as exc:
        assert "props.yaml" in str(exc)
    else:
        assert exp.arms


@SETTINGS
@given(st.one_of(YAML_TEXT, mutated(EXPERIMENTS).map(yaml.safe_dump)))
def test_experiment_from_any_yaml_file(text: str) -> None:
    with _file(text, "exp.yaml") as path:
        try:
            load_experiment(path)
        except ExperimentConfigError as exc:
            assert str(path) in str(exc)

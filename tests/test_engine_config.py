"""The train config's ``engine`` section: local by default, Spark on request, typos and models that
Spark cannot train refused before anything runs (no JVM needed here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import ConfigError, config_from_dict, load_config


def test_engine_defaults_to_the_local_engine() -> None:
    cfg = config_from_dict({})
    assert cfg.engine.name == "local" and cfg.engine.master is None and cfg.engine.conf == {}


def test_set_engine_name_spark_selects_spark_with_master_and_conf(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "als"}, "engine": {"conf": {}}}))
    cfg = load_config(
        path,
        ["engine.name=spark", "engine.master=spark://head:7077", "engine.conf.spark.executor.memory=8g"],
    )
    assert cfg.engine.name == "spark" and cfg.engine.master == "spark://head:7077"
    assert cfg.engine.conf == {"spark.executor.memory": "8g"}  # nested keys read as one property name


def test_unknown_engine_key_is_rejected_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'engine.mastr'"):
        config_from_dict({"engine": {"name": "spark", "mastr": "local[2]"}, "model": {"name": "als"}})


def test_unknown_engine_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"engine.name"):
        config_from_dict({"engine": {"name": "dask"}})


def test_spark_conf_keys_must_be_spark_properties() -> None:
    with pytest.raises(ConfigError, match=r"'executor.memory' is not a Spark property"):
        config_from_dict(
            {"engine": {"name": "spark", "conf": {"executor.memory": "8g"}}, "model": {"name": "als"}}
        )


def test_master_without_spark_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"apply to engine.name 'spark' only"):
        config_from_dict({"engine": {"master": "local[2]"}})


@pytest.mark.parametrize("model", ["graphfilter", "bpr"])
def test_models_without_a_spark_implementation_fail_early_naming_the_local_engine(model: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"engine": {"name": "spark"}, "model": {"name": model}})
    message = str(err.value)
    assert f"model {model!r} has no Spark implementation" in message
    assert "engine.name=local" in message and "100k users x 100k items x 3M interactions" in message


def test_events_path_needs_a_world_and_excludes_the_live_log() -> None:
    with pytest.raises(ConfigError, match=r"data.events_path needs data.format 'world'"):
        config_from_dict({"data": {"format": "lightgcn", "events_path": "x"}})
    with pytest.raises(ConfigError, match=r"data.events_log and data.events_path together"):
        config_from_dict({"data": {"events_log": "a", "events_path": "b"}})

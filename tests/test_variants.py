"""Ranking variants: every shipped config loads; unknown keys and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.ranking.variants import (
    DEFAULT_VARIANT_NAME,
    RankingVariant,
    VariantError,
    load_variant,
    load_variants,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ranking"


def test_every_shipped_config_loads() -> None:
    files = sorted(CONFIGS.glob("*.yaml"))
    assert files, "no shipped ranking configs"
    for path in files:
        variant = load_variant(path)
        assert isinstance(variant, RankingVariant)
        assert variant.name == path.stem, f"{path}: name should match the file name"
    variants = load_variants(CONFIGS)
    assert {DEFAULT_VARIANT_NAME, "no_kol", "kol_heavy", "social_heavy"} <= set(variants)


def test_shipped_variants_differ_where_they_say() -> None:
    v = load_variants(CONFIGS)
    assert v["no_kol"].weights.kol_affinity == 0.0
    assert v["kol_heavy"].weights.kol_affinity > v["default"].weights.kol_affinity > 0
    assert v["social_heavy"].weights.trust > v["default"].weights.trust


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nper_kol_capp: 3\n")
    with pytest.raises(VariantError, match=r"typo\.yaml.*unknown key 'per_kol_capp'"):
        load_variant(path)


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("weights:\n  kol_afinity: 1.0\n")
    with pytest.raises(VariantError, match=r"unknown key 'weights\.kol_afinity'"):
        load_variant(path)


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "neg.yaml"
    path.write_text("weights:\n  trust: -1\n")
    with pytest.raises(VariantError, match=r"weights\.trust"):
        load_variant(path)
    for effort in ("0", "1.5"):  # a share of the index's search effort: (0, 1]
        path.write_text(f"candidates:\n  similar_search_effort: {effort}\n")
        with pytest.raises(VariantError, match=r"candidates\.similar_search_effort"):
            load_variant(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(VariantError, match="mapping"):
        load_variant(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(VariantError, match="invalid YAML"):
        load_variant(path)


def test_name_defaults_to_file_stem_and_duplicates_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("per_kol_cap: 1\n")
    assert load_variant(tmp_path / "a.yaml").name == "a"
    (tmp_path / "b.yaml").write_text("name: a\n")
    with pytest.raises(VariantError, match="duplicate variant name 'a'"):
        load_variants(tmp_path)
    with pytest.raises(VariantError, match="no such"):
        load_variants(tmp_path / "missing")

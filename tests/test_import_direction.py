"""Imports point inward (DESIGN.md): recsys imports none of the other areas, features only the schema,
serving never training. Checked on the source text so a violation fails before anyone notices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*(?:from|import)\s+([a-zA-Z_][\w.]*)", re.MULTILINE)

FORBIDDEN = {
    "recsys": ("features", "serving", "training", "kolfeed", "fastapi", "redis", "uvicorn"),
    "features": ("serving", "training", "kolfeed", "fastapi"),
    "serving": ("training",),
    "training": ("serving", "fastapi", "redis"),
}


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in IMPORT.findall(path.read_text()):
            found.append((path.relative_to(ROOT), module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_inward(package: str) -> None:
    bad = [(str(p), m) for p, m in _imports(package) if m in FORBIDDEN[package]]
    assert not bad, f"{package} must not import {FORBIDDEN[package]}: {bad}"


def test_features_knows_only_the_schema_of_recsys() -> None:
    allowed = {"recsys.schema", "recsys.ids", "recsys.progress"}  # the data model and two utilities
    for path in sorted((ROOT / "features").rglob("*.py")):
        for module in IMPORT.findall(path.read_text()):
            if module.startswith("recsys"):
                assert module in allowed, f"{path.name} imports {module}"


def test_tests_import_helpers_never_other_test_modules() -> None:
    """Shared test code lives in helper modules (service_harness, ranking_fixtures, ...): importing a
    test module from another runs its tests' module-level code twice and hides what is shared."""
    bad = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for module in IMPORT.findall(path.read_text()):
            if module.startswith("tests.test_"):
                bad.append((path.name, module))
    assert not bad, f"test modules importing other test modules: {bad}"


def test_routers_hold_no_logic_that_others_import() -> None:
    """Routers are thin HTTP adapters: nothing outside serving/routers imports a name from a router
    module except the ``router`` objects the app mounts (the logic lives in serving/*_service.py)."""
    pattern = re.compile(r"^\s*from\s+serving\.routers\.(\w+)\s+import\s+([^\n]+)", re.MULTILINE)
    bad = []
    for package in ("recsys", "training", "features", "serving", "kolfeed", "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "routers" in path.parts:
                continue
            for module, names in pattern.findall(path.read_text()):
                imported = {n.strip(" ()").split(" as ")[0] for n in names.split(",")} - {""}
                if imported - {"router"}:
                    bad.append((str(path.relative_to(ROOT)), module, sorted(imported)))
    assert not bad, f"logic imported from router modules: {bad}"

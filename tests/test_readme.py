"""The README stands alone and lists every setting an operator can turn."""

from __future__ import annotations

import re
from pathlib import Path

from serving.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_kolfeed_variable_is_in_the_readme_table() -> None:
    in_code = set()
    for package in ("recsys", "training", "features", "serving", "kolfeed"):
        for path in (ROOT / package).rglob("*.py"):
            in_code |= set(re.findall(r"KOLFEED_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    fields = {f"KOLFEED_{name.upper()}" for name in Settings.model_fields}
    rows = set(re.findall(r"^\| `(KOLFEED_[A-Z0-9_]+)` \|", README, flags=re.M))
    missing = sorted((fields | in_code) - rows)
    assert not missing, f"README 'Service settings' lacks rows for {missing}"


def test_the_readme_links_nothing_outside_the_repository() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith(("http://", "https://")):
            continue
        assert not target.startswith(".."), target
        assert (ROOT / target).exists(), f"README links {target}, which does not exist"

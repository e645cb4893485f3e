"""Where the configs shipped with kolfeed live, so commands work from any directory.

Why: ``configs/ranking``, ``configs/experiments`` and ``configs/train/*.yaml`` are defaults that
commands name relative to the repository. Run from elsewhere (an installed package, another working
directory), those paths do not exist; this resolves such a path to the copy that ships with the
package: the source tree beside the packages (checkout, editable install) or
``<prefix>/share/kolfeed/configs`` (a wheel's data files). A path that exists as given always wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIGS = "configs"


def shipped_configs_dir() -> Path | None:
    """The shipped ``configs`` directory, or None when this installation has none."""
    for candidate in (
        Path(__file__).resolve().parent.parent / CONFIGS,
        Path(sys.prefix) / "share" / "kolfeed" / CONFIGS,
    ):
        if candidate.is_dir():
            return candidate
    return None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself when it exists or is absolute; else, for ``configs/...``, the shipped copy
    when that exists; else ``path`` unchanged (the caller's "not found" error names it)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts
    if parts and parts[0] == CONFIGS:
        root = shipped_configs_dir()
        if root is not None:
            candidate = root.joinpath(*parts[1:])
            if candidate.exists():
                return candidate
    return given

"""Benchmark dataset formats by name: one explicit table, no module scanning.

The synthetic-world format ("world") is added by the training side, which builds Interactions from
:func:`recsys.io.load_world`: add one entry to ``FORMATS`` with the option names it accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.datasets.lightgcn import load_lightgcn
from recsys.datasets.movielens import load_movielens
from recsys.datasets.recbole import load_recbole
from recsys.interactions import Interactions
from recsys.io.errors import DatasetError


@dataclass(frozen=True)
class DatasetFormat:
    loader: Callable[..., Interactions]
    options: tuple[str, ...]
    """Keyword options the loader accepts; anything else is rejected by name."""
    description: str


_SPLIT_OPTIONS = ("test_ratio", "min_rating")

FORMATS: dict[str, DatasetFormat] = {
    "lightgcn": DatasetFormat(load_lightgcn, (), "directory with train.txt/test.txt (user item item ...)"),
    "recbole": DatasetFormat(load_recbole, _SPLIT_OPTIONS, "RecBole atomic .inter file (or its directory)"),
    "movielens": DatasetFormat(load_movielens, _SPLIT_OPTIONS, "MovieLens u.data (or its directory)"),
}


def load_dataset(path: str | Path, fmt: str, options: Mapping[str, Any] | None = None) -> Interactions:
    """Load a dataset by format name; unknown formats and options raise :class:`DatasetError`."""
    spec = FORMATS.get(fmt)
    if spec is None:
        raise DatasetError(f"unknown dataset format {fmt!r}; known formats: {', '.join(sorted(FORMATS))}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) if spec.options else "none"
        raise DatasetError(
            f"format {fmt!r} has no option(s) {', '.join(map(repr, unknown))} (allowed: {allowed})"
        )
    return spec.loader(Path(path), **options)

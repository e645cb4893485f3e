"""The explicit model registry: config name -> class, typed construction, and loading by name.

No module scanning: adding a model is one import and one line in ``MODELS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys.models.als import ALS
from recsys.models.base import Recommender
from recsys.models.bpr import BPR
from recsys.models.graphfilter import GraphFilter
from recsys.models.params import ModelConfigError
from recsys.models.popularity import Popularity
from recsys.models.space import SearchSpace
from recsys.models.storage import ModelFileError, read_meta

__all__ = [
    "MODELS",
    "ModelConfigError",
    "ModelFileError",
    "create",
    "load_model",
    "params_class",
    "search_space",
    "tune_starts",
]

MODELS: dict[str, type] = {
    "popularity": Popularity,
    "als": ALS,
    "bpr": BPR,
    "graphfilter": GraphFilter,
}


def _lookup(name: str) -> type:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelConfigError(
            f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}"
        ) from None


def create(name: str, params: Mapping[str, Any] | None = None) -> Recommender:
    """Build an unfitted model; unknown or invalid params raise ModelConfigError naming the key."""
    model: Recommender = _lookup(name)(params or {})
    return model


def params_class(name: str) -> type:
    """The pydantic params class of a model (its defaults are the tuned values)."""
    from recsys.models.als import ALSParams
    from recsys.models.bpr import BPRParams
    from recsys.models.graphfilter import GraphFilterParams
    from recsys.models.popularity import PopularityParams

    classes: dict[str, type] = {
        "popularity": PopularityParams,
        "als": ALSParams,
        "bpr": BPRParams,
        "graphfilter": GraphFilterParams,
    }
    _lookup(name)
    return classes[name]


def search_space(name: str) -> SearchSpace:
    """The declared search space of a model (next to its params in the model's module)."""
    from recsys.models import als, bpr, graphfilter, popularity

    spaces: dict[str, SearchSpace] = {
        "popularity": popularity.SEARCH_SPACE,
        "als": als.SEARCH_SPACE,
        "bpr": bpr.SEARCH_SPACE,
        "graphfilter": graphfilter.SEARCH_SPACE,
    }
    _lookup(name)
    return spaces[name]


def tune_starts(name: str) -> list[dict[str, Any]]:
    """Known-good points a tune evaluates first (a missing ``factors`` means the data-adaptive value)."""
    from recsys.models import als, bpr, graphfilter, popularity

    starts: dict[str, list[dict[str, Any]]] = {
        "popularity": popularity.TUNE_STARTS,
        "als": als.TUNE_STARTS,
        "bpr": bpr.TUNE_STARTS,
        "graphfilter": graphfilter.TUNE_STARTS,
    }
    _lookup(name)
    return [dict(s) for s in starts[name]]


def load_model(directory: Path) -> Recommender:
    """Load a saved model; ``model.json`` in the directory says which class to use."""
    meta = read_meta(Path(directory))
    try:
        cls: Any = MODELS[meta["model"]]
    except KeyError:
        raise ModelFileError(f"{directory}: unknown model {meta['model']!r} in model.json") from None
    model: Recommender = cls.load(Path(directory))
    return model

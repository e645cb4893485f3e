"""Hyper-parameter search spaces, declared as plain data next to each model's params.

Why plain data: ``recsys`` must not depend on the tuner. A space is a mapping from a parameter name
to one dimension (an int or float range, optionally log-scaled, or a finite choice); the tuner in
``training.tune`` turns dimensions into Optuna suggestions. Parameters a space does not name keep the
model's default (or the config's value). :func:`check_space` proves at import/test time that every
point of a space is a valid parameter set of its model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recsys.models.params import ModelConfigError, ModelParams


class SpaceError(ModelConfigError):
    """A search space names an unknown parameter or holds an invalid range."""


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        return f"int [{self.low}, {self.high}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"float [{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


Dim = IntRange | FloatRange | Choice
SearchSpace = Mapping[str, Dim]


def corner_points(space: SearchSpace) -> list[dict[str, Any]]:
    """The lows, the highs and (for choices) every value: the points :func:`check_space` validates."""
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    points: list[dict[str, Any]] = []
    for name, dim in space.items():
        if isinstance(dim, Choice):
            lows[name] = dim.values[0]
            highs[name] = dim.values[-1]
        else:
            lows[name], highs[name] = dim.low, dim.high
    points.extend([lows, highs])
    for name, dim in space.items():
        if isinstance(dim, Choice):
            points.extend({**lows, name: value} for value in dim.values)
    return points


def check_space(model: str, params_cls: type[ModelParams], space: SearchSpace) -> None:
    """Raise :class:`SpaceError` naming the model and parameter unless every corner of ``space`` is a
    valid ``params_cls`` (ranges ordered, log ranges positive, choices non-empty)."""
    fields = set(params_cls.model_fields)
    for name, dim in space.items():
        if name not in fields:
            raise SpaceError(f"search space of {model!r}: unknown parameter {name!r}")
        if isinstance(dim, Choice):
            if not dim.values:
                raise SpaceError(f"search space of {model!r}: {name} has no choices")
            continue
        if dim.low > dim.high:
            raise SpaceError(f"search space of {model!r}: {name} low {dim.low} > high {dim.high}")
        if dim.log and dim.low <= 0:
            raise SpaceError(f"search space of {model!r}: {name} is log-scaled but low is {dim.low}")
    for point in corner_points(space):
        try:
            params_cls.model_validate(point)
        except Exception as exc:  # pydantic's ValidationError: report it as the space's fault
            raise SpaceError(f"search space of {model!r}: point {point} is invalid ({exc})") from None


def parse_space(raw: Mapping[str, Any], where: str) -> dict[str, Dim]:
    """A space written in a config: ``{name: [low, high]}``, ``{name: {low, high, log}}`` or
    ``{name: {choices: [...]}}``; integers stay integers. Errors name ``where.name``."""
    out: dict[str, Dim] = {}
    for name, spec in raw.items():
        key = f"{where}.{name}"
        if isinstance(spec, Mapping):
            extra = sorted(set(spec) - {"low", "high", "log", "choices"})
            if extra:
                raise SpaceError(f"{key}: unknown key(s) {', '.join(extra)} (use low, high, log or choices)")
            if "choices" in spec:
                values = spec["choices"]
                if not isinstance(values, Sequence) or isinstance(values, str) or not values:
                    raise SpaceError(f"{key}.choices: expected a non-empty list")
                out[name] = Choice(tuple(values))
                continue
            if "low" not in spec or "high" not in spec:
                raise SpaceError(f"{key}: a range needs low and high")
            low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
        elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2:
            low, high, log = spec[0], spec[1], False
        else:
            raise SpaceError(f"{key}: expected [low, high], {{low, high, log}} or {{choices: [...]}}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise SpaceError(f"{key}: low and high must be numbers")
        if isinstance(low, int) and isinstance(high, int):
            out[name] = IntRange(low, high, log)
        else:
            out[name] = FloatRange(float(low), float(high), log)
    return out


def describe_space(space: SearchSpace) -> list[str]:
    return [f"{name}: {dim.describe()}" for name, dim in space.items()]

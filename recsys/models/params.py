"""Typed hyper-parameters shared by every model: strict pydantic models that reject unknown keys.

A config typo (``factor=64`` for ``factors``) must fail loudly at config time, naming the key,
rather than silently training with defaults; :func:`parse_params` turns pydantic's error into a
:class:`ModelConfigError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class ModelConfigError(ValueError):
    """A model name or hyper-parameter is unknown or invalid."""


class ModelParams(BaseModel):
    """Base of every model's params: frozen, no extra keys, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=ModelParams)


def parse_params(cls: type[P], params: P | Mapping[str, Any] | None, model: str) -> P:
    """Validate ``params`` into ``cls`` (an instance of it is returned as it is); unknown or ill-typed
    keys raise ModelConfigError naming them."""
    if isinstance(params, cls):
        return params
    raw = dict(params or {})
    unknown = sorted(set(raw) - set(cls.model_fields))
    if unknown:
        allowed = ", ".join(sorted(cls.model_fields))
        raise ModelConfigError(
            f"model {model!r}: unknown parameter(s) {', '.join(repr(k) for k in unknown)}; allowed: {allowed}"
        )
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<params>'}: {err['msg']}" for err in exc.errors()
        )
        raise ModelConfigError(f"model {model!r}: invalid parameter(s): {problems}") from None

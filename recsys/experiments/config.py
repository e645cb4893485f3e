"""Experiment definitions: one YAML file per experiment under ``configs/experiments/``.

Why typed and strict: a typo in a traffic share or an arm name silently biases an experiment for weeks.
Unknown keys are rejected, shares must sum to 1, and every error names the file and the key.

Example::

    name: kol_weight
    salt: kol-weight-2024-01
    control: control
    start: 2024-01-01T00:00:00Z   # optional; naive datetimes are read as UTC
    stop: 2024-02-01T00:00:00Z    # optional
    arms:
      - {name: control, variant: default, share: 0.5}
      - {name: kol_heavy, variant: kol_heavy, share: 0.5}

``variant`` names a ranking config ``configs/ranking/<variant>.yaml``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.shipped import resolve_config_path

SHARE_TOLERANCE = 1e-6


class ExperimentConfigError(ValueError):
    """An experiment file is invalid; the message is one line naming the file and the key."""


def _check_token(value: str, what: str) -> str:
    if not value or any(c in value for c in "/\\ \t\n") or value.startswith("."):
        raise ValueError(f"{what} must be a non-empty token without '/', '\\', whitespace or a leading '.'")
    return value


class ArmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    variant: str
    """A ranking config file name under ``configs/ranking/`` without ``.yaml``."""
    share: float = Field(gt=0.0, le=1.0)
    """Fraction of users (by hash bucket) sent to this arm."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_token(value, "arm name")

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return _check_token(value, "variant")


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    salt: str = Field(min_length=1)
    """Mixed into the assignment hash; a new salt reshuffles users (use one per experiment)."""
    description: str = ""
    control: str | None = None
    """Name of the control arm; defaults to the first arm."""
    start: datetime | None = None
    stop: datetime | None = None
    arms: list[ArmConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_token(value, "name")

    @field_validator("start", "stop")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arms: duplicate arm name(s) {', '.join(dupes)}")
        total = math.fsum(a.share for a in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            listed = " + ".join(f"{a.name}={a.share:g}" for a in self.arms)
            raise ValueError(f"arms: shares must sum to 1, got {listed} = {total:.6g}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control: {self.control!r} is not an arm (arms: {', '.join(names)})")
        if self.start is not None and self.stop is not None and self.stop <= self.start:
            raise ValueError(f"stop ({self.stop.isoformat()}) must be after start ({self.start.isoformat()})")
        return self

    @property
    def control_arm(self) -> str:
        return self.control if self.control is not None else self.arms[0].name

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"experiment {self.name!r} has no arm {name!r}")

    @property
    def start_ts(self) -> int | None:
        return None if self.start is None else int(self.start.timestamp())

    @property
    def stop_ts(self) -> int | None:
        return None if self.stop is None else int(self.stop.timestamp())


def _format_error(exc: ValidationError, source: str) -> ExperimentConfigError:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        msg = f"{source}: unknown key {path!r}"
    else:
        text = str(err["msg"]).removeprefix("Value error, ")
        msg = f"{source}: {path}: {text}" if path != "<root>" else f"{source}: {text}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ExperimentConfigError(msg)


def experiment_from_dict(raw: object, source: str = "experiment") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ExperimentConfigError(f"{source}: top level must be a mapping")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise _format_error(exc, source) from None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate one experiment YAML; ``name`` defaults to the file stem."""
    p = Path(path)
    if not p.is_file():
        raise ExperimentConfigError(f"{p}: experiment file not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(raw, dict):
        raw.setdefault("name", p.stem)
    return experiment_from_dict(raw, source=str(p))


def load_experiments(directory: str | Path) -> dict[str, ExperimentConfig]:
    """All ``*.yaml``/``*.yml`` experiments in a directory, by name; names must be unique."""
    d = resolve_config_path(directory)
    if not d.is_dir():
        raise ExperimentConfigError(f"{d}: experiment directory not found")
    out: dict[str, ExperimentConfig] = {}
    where: dict[str, Path] = {}
    for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        exp = load_experiment(p)
        if exp.name in out:
            raise ExperimentConfigError(
                f"{p}: experiment name {exp.name!r} already used by {where[exp.name]}"
            )
        out[exp.name] = exp
        where[exp.name] = p
    return out


def find_experiment(name: str, directory: str | Path) -> ExperimentConfig:
    experiments = load_experiments(directory)
    if name not in experiments:
        known = ", ".join(sorted(experiments)) or "none"
        raise ExperimentConfigError(f"no experiment named {name!r} in {directory} (known: {known})")
    return experiments[name]


def missing_variants(experiment: ExperimentConfig, ranking_dir: str | Path) -> list[str]:
    """Variants the experiment names that have no ``<variant>.yaml`` in ``ranking_dir``."""
    d = Path(ranking_dir)
    return [a.variant for a in experiment.arms if not (d / f"{a.variant}.yaml").is_file()]

"""The typed config of a training run: one YAML file plus ``--set a.b.c=value`` overrides.

Why typed: RecBole-style untyped dict configs silently accept typos. Every section here forbids
unknown keys, and every error names the offending key path (``model.params.factorz``) in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.schema import ACTION_NAMES, DEFAULT_ACTION_WEIGHTS
from recsys.shipped import resolve_config_path


class ConfigError(ValueError):
    """A config file or override is invalid; the message is one line naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


DataFormat = Literal["world", "lightgcn", "recbole", "movielens"]


class DataConfig(_Strict):
    path: str = "worlds/demo"
    format: DataFormat = "world"
    options: dict[str, Any] = Field(default_factory=dict)
    """Loader options of benchmark formats (e.g. recbole/movielens ``test_ratio``); none for worlds."""
    events_log: str | None = None
    """The service's durable event log directory (worlds only): its events are added to the world's
    event history and the whole is split chronologically again (``test_fraction`` of time held out)."""
    events_path: str | None = None
    """An event export (``kolfeed events export --out DIR``: ``DIR/date=YYYY-MM-DD/*.parquet`` of every
    replica's and worker's log; worlds only): added to the world's event history like
    ``events_log`` (a world with an empty events table trains on the export alone)."""
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    max_skipped_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01
    """The run fails (and prints what was skipped, per table and reason) when more than this share of
    the rows it reads are malformed and skipped; 1.0 accepts anything."""

    @model_validator(mode="after")
    def _world_has_no_options(self) -> DataConfig:
        if self.format == "world" and self.options:
            raise ValueError(f"format 'world' takes no options (got {', '.join(sorted(self.options))})")
        for key in ("events_log", "events_path"):
            if getattr(self, key) is not None and self.format != "world":
                raise ValueError(f"data.{key} needs data.format 'world' (it has events, not a catalog)")
        if self.events_log is not None and self.events_path is not None:
            raise ValueError(
                "data.events_log and data.events_path together would count the exported events twice; "
                "export the log (kolfeed events export) and use data.events_path alone"
            )
        return self


def _check_actions(names: list[str] | dict[str, float], what: str) -> None:
    for name in names:
        if name not in ACTION_NAMES:
            raise ValueError(f"unknown action {name!r} in {what}; expected one of {', '.join(ACTION_NAMES)}")


class GraphsConfig(_Strict):
    """How a world's events become the behaviour-weighted user–item confidence matrix."""

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_ACTION_WEIGHTS))
    behaviours: list[str] = Field(default_factory=lambda: [a for a in ACTION_NAMES if a != "impression"])
    half_life_days: float | None = None
    """Recency decay of training confidence; ``None`` = no decay."""
    engagement_half_life_days: float | None = 30.0
    """Recency decay of user–KOL engagement (affinity)."""
    fit_smoothing: float = 5.0
    """Pseudo-count pulling a KOL's category fit towards the global category mix."""

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        _check_actions(value, "graphs.weights")
        merged = dict(DEFAULT_ACTION_WEIGHTS)
        merged.update(value)
        return merged

    @field_validator("behaviours")
    @classmethod
    def _behaviours(cls, value: list[str]) -> list[str]:
        _check_actions(value, "graphs.behaviours")
        if not value:
            raise ValueError("graphs.behaviours must name at least one action")
        return value

    @field_validator("half_life_days", "engagement_half_life_days")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("a half-life must be > 0 days (or null for no decay)")
        return value


class AffinityConfig(_Strict):
    """Weights of the user→KOL affinity score (see recsys.affinity)."""

    follow: float = 2.0
    engagement: float = 1.0
    friends_bought: float = 0.5
    similarity: float = 0.5
    top_n: Annotated[int, Field(ge=1)] = 50


class ModelConfig(_Strict):
    name: str = "graphfilter"
    params: dict[str, Any] = Field(default_factory=dict)


class EvalConfig(_Strict):
    ks: list[int] = Field(default_factory=lambda: [20])
    batch_size: Annotated[int, Field(ge=1)] = 2048
    per_behaviour: bool = True
    behaviours: list[str] = Field(default_factory=lambda: ["click", "share", "buy"])
    max_users: Annotated[int, Field(ge=1)] | None = None
    """Evaluate on a seeded uniform sample of at most this many test users (None: all of them).
    Keeps exact full-ranking evaluation of costly models inside the time budget on large splits."""

    @field_validator("ks")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("eval.ks must be a non-empty list of positive integers")
        return value

    @field_validator("behaviours")
    @classmethod
    def _behaviours(cls, value: list[str]) -> list[str]:
        _check_actions(value, "eval.behaviours")
        return value


class ExportConfig(_Strict):
    index_factory: str = "Flat"
    user_neighbours: Annotated[int, Field(ge=0)] = 0
    """Search each user's first this many neighbours in the index once, at export, and keep them in the
    run (``user_neighbours.npy``): the feed then reads them instead of searching per request
    (:mod:`recsys.user_neighbours`; 512 covers the default variant for users with up to 312 seen
    items). 0: search per request. A table over ``recsys.user_neighbours.DEFAULT_MAX_MB`` is not
    written."""
    catalog: bool = True
    """Copy the world's items/kols/posts and social tables into the run directory."""
    refit_on_all_events: bool = False
    """After evaluating on the held-out split, fit again on every event (held-out ones included) and
    export that model. The retraining loop needs it: a chronological split holds out the newest
    events, which are exactly what the service logged since the last run (new users, new tastes).
    ``metrics`` stay those of the held-out evaluation; ``kolfeed eval`` of such a run is in-sample."""


class TuneConfig(_Strict):
    """How ``kolfeed tune`` searches (ignored by ``kolfeed train``; see training.tune)."""

    models: list[str] = Field(default_factory=lambda: ["graphfilter"])
    """Models searched, each in its declared space (``kolfeed models``); more than one: the model is a
    searched choice too."""
    spaces: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-model replacement of declared ranges, e.g.
    ``{graphfilter: {factors: {low: 32, high: 512, log: true}}}``."""
    trials: Annotated[int, Field(ge=1)] = 300
    budget_seconds: Annotated[float, Field(gt=0)] = 780.0
    """Wall-clock budget of the tune *and* the final ``kolfeed train`` of best.yaml (estimated)."""
    objective: list[str] = Field(default_factory=lambda: ["recall@20", "ndcg@20"])
    """Validation metrics averaged into the objective (maximised)."""
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    max_users: Annotated[int, Field(ge=10)] = 4000
    """Validation users sampled (seeded) to score each trial."""
    memory_mb: Annotated[int, Field(ge=64)] = 2500
    """Memory of the graph filter's cached pieces (fewer sampled users when it would not fit)."""
    patience: Annotated[int, Field(ge=1)] = 80
    """Stop when this many finished trials in a row did not improve the best (a converged search)."""

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("tune.objective must name at least one metric like recall@20")
        for name in value:
            metric, _, k = name.partition("@")
            if metric not in ("recall", "ndcg", "hit", "mrr") or not k.isdigit() or int(k) < 1:
                raise ValueError(f"tune.objective: {name!r} is not recall@K, ndcg@K, hit@K or mrr@K")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("tune.models must name at least one model")
        return value


SPARK_MODELS: tuple[str, ...] = ("als", "popularity")
"""Models the Spark engine trains (MLlib ALS; popularity is a Spark SQL count)."""
LOCAL_ENGINE_SIZE = "about 100k users x 100k items x 3M interactions in 11 min and 3.9 GB on 2 cores"
"""What the local engine handles, as measured by ``kolfeed bench scale`` (bench/results/scale.json)."""


class EngineConfig(_Strict):
    """Where the data side and the fit run: ``local`` (one process, the default) or Apache ``spark``.

    ``master`` is a Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``, ``k8s://…``);
    None takes the one ``spark-submit --master`` gave, else ``local[2]``. ``conf`` holds Spark
    properties (``spark.executor.memory: 8g``) passed to the session as they are."""

    name: Literal["local", "spark"] = "local"
    master: str | None = None
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        """Nested mappings become dotted Spark property names, so YAML may nest them and
        ``--set engine.conf.spark.executor.memory=8g`` (split at every dot) still works."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: dict[str, Any]) -> None:
            for key, item in node.items():
                name = f"{prefix}.{key}" if prefix else str(key)
                if isinstance(item, dict):
                    walk(name, item)
                else:
                    flat[name] = item

        walk("", value)
        return flat

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"engine.conf: {bad[0]!r} is not a Spark property (they start with 'spark.')")
        return value

    @model_validator(mode="after")
    def _spark_only(self) -> EngineConfig:
        if self.name == "local" and (self.master is not None or self.conf):
            raise ValueError("engine.master and engine.conf apply to engine.name 'spark' only")
        return self


class TrainConfig(_Strict):
    name: str = "run"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    graphs: GraphsConfig = Field(default_factory=GraphsConfig)
    affinity: AffinityConfig = Field(default_factory=AffinityConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    tune: TuneConfig | None = None
    """Only read by ``kolfeed tune``; a tuned ``best.yaml`` has none."""
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _engine_trains_model(self) -> TrainConfig:
        if self.engine.name != "spark":
            return self
        if self.model.name not in SPARK_MODELS:
            raise ValueError(
                f"model {self.model.name!r} has no Spark implementation (engine spark trains "
                f"{', '.join(SPARK_MODELS)}); train it with engine.name=local, which handles "
                f"{LOCAL_ENGINE_SIZE}"
            )
        if self.export.refit_on_all_events:
            raise ValueError(
                "export.refit_on_all_events is done by the local engine only; train with engine.name=local "
                "or leave it off (the Spark run exports the model fitted on the training split)"
            )
        if self.data.events_log is not None:
            raise ValueError(
                "data.events_log is read by the local engine; for Spark export the log first "
                "(kolfeed events export) and set data.events_path"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or any(c in value for c in "/\\ ") or value.startswith("."):
            raise ValueError("name must be a non-empty token without '/', '\\', spaces or a leading '.'")
        return value


def _format_error(exc: ValidationError, source: str) -> ConfigError:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        msg = f"{source}: unknown key {path!r}"
    else:
        msg = f"{source}: {path}: {err['msg']}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(msg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a","b","c"], value parsed as a YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})"
        ) from None
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config dict (a copy); unknown keys are caught by validation."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: {'.'.join(parts[:i])} is not a section")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text}: {'.'.join(parts[:-1])} is not a section")
        node[parts[-1]] = value
    return out


def config_from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise _format_error(exc, source) from None


def load_config(path: str | Path, overrides: list[str] | None = None, cwd: Path | None = None) -> TrainConfig:
    """Read YAML, apply overrides, validate, and resolve ``data.path`` against ``cwd`` (default: cwd)."""
    p = resolve_config_path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    raw.setdefault("name", p.stem)
    cfg = config_from_dict(apply_overrides(raw, overrides or []), source=str(p))
    base = cwd if cwd is not None else Path.cwd()
    data_path = Path(cfg.data.path).expanduser()
    if not data_path.is_absolute():
        data_path = (base / data_path).resolve()
    cfg.data.path = str(data_path)
    if cfg.data.events_path is not None:
        events_path = Path(cfg.data.events_path).expanduser()
        cfg.data.events_path = str(
            events_path if events_path.is_absolute() else (base / events_path).resolve()
        )
    return cfg

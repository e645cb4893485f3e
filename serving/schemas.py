"""Request and response bodies of the HTTP API (pydantic), with the limits they enforce.

Why strict models: the frontend is a different team; an unknown field, an unknown action or an id
that is not a valid id must come back as a 4xx that names the problem, never be silently ignored.

Ids are the shop's own (``recsys.ids``): a request may send a string (``"alice"``, a UUID, a SKU) or
a JSON integer (``42`` and ``"42"`` are the same id); each is validated (at most 128 printable
characters) and turned into its int64 key right here, so the store, the event log and the ranker
only ever see keys. Responses carry ids back as strings, as the shop spells them (the run's labels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import to_json

from recsys.ids import ID_LIST_PATTERN, ID_PATTERN, MAX_ID_LENGTH, IdError, check_id, id_key
from recsys.ranking.context import FeedEntry
from recsys.schema import ACTION_NAMES

MAX_EVENTS_PER_BATCH = 1_000
MAX_FEED_LIMIT = 100
MAX_EXCLUDE = 1_000
MAX_TS = 32_503_680_000.0
"""2999-12-31T24:00Z: later timestamps are typos (milliseconds sent as seconds) and overflow int64 math."""
MAX_VALUE = 1e12

ID_DESCRIPTION = (
    f"the shop's id: a string of 1-{MAX_ID_LENGTH} printable characters, or an integer "
    '(42 and "42" are the same id)'
)
_ID_STRING_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": ID_PATTERN,
}


def _id_problem(exc: IdError) -> ValueError:
    """IdError's message without its field prefix (the 422 names the field from its location)."""
    return ValueError(str(exc).removeprefix("id: "))


def external_id_key(value: Any) -> int:
    """One request id (str or int) → its int64 key; ValueError saying what is wrong with it."""
    try:
        return id_key(value, "id")
    except IdError as exc:
        raise _id_problem(exc) from None


def _optional_id_key(value: Any) -> int | None:
    return None if value is None else external_id_key(value)


Id = Annotated[
    int,
    BeforeValidator(external_id_key),
    WithJsonSchema({"anyOf": [_ID_STRING_SCHEMA, {"type": "integer"}], "description": ID_DESCRIPTION}),
]
"""A request id, held as its int64 key after validation."""

OptionalId = Annotated[
    int | None,
    BeforeValidator(_optional_id_key),
    WithJsonSchema(
        {
            "anyOf": [_ID_STRING_SCHEMA, {"type": "integer"}, {"type": "null"}],
            "description": ID_DESCRIPTION,
        }
    ),
]


def parse_id_list(raw: str | None, name: str) -> list[int]:
    """``"sku-1, 42,alice"`` → their keys; raises ValueError naming the bad element."""
    if raw is None or not raw.strip():
        return []
    out: list[int] = []
    for part in raw.split(","):
        token = part.strip()
        if not token:
            continue
        try:
            out.append(id_key(token, name))
        except IdError as exc:
            raise ValueError(str(exc)) from None
        if len(out) > MAX_EXCLUDE:
            raise ValueError(f"{name}: at most {MAX_EXCLUDE} ids")
    return out


class FeedQuery(BaseModel):
    """Query string of ``GET /v1/feed``; unknown parameters are rejected (FastAPI ignores them otherwise)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(
        default=...,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="the user to build a page for (the shop's id; an unknown user gets a cold-start page)",
        json_schema_extra={"pattern": ID_PATTERN},
        examples=["alice", "42"],
    )
    limit: int = Field(default=20, ge=1, le=MAX_FEED_LIMIT, description="entries on the page")
    exclude: str | None = Field(
        default=None,
        description="comma-separated item ids not to show (ids containing a comma cannot be listed)",
        json_schema_extra={"pattern": ID_LIST_PATTERN},
    )
    variant: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="debug: force a ranking variant (one of the loaded variants)",
    )

    @field_validator("user_id", mode="before")
    @classmethod
    def _check_user_id(cls, v: Any) -> str:
        try:
            return check_id(v, "id")  # an int (Python callers) becomes its decimal string
        except IdError as exc:
            raise _id_problem(exc) from None

    @field_validator("exclude")
    @classmethod
    def _check_exclude(cls, v: str | None) -> str | None:
        parse_id_list(v, "exclude")
        return v

    @property
    def user_key(self) -> int:
        return id_key(self.user_id, "user_id")

    @property
    def exclude_ids(self) -> list[int]:
        return parse_id_list(self.exclude, "exclude")


class FeedItem(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": "sku-1151",
                    "post_id": "post-473",
                    "kol_id": "mia_beauty",
                    "score": 2.41,
                    "reasons": ["because you follow @mia_beauty", "2 friends bought this"],
                    "source": "followed_kol",
                }
            ]
        }
    )

    item_id: str = Field(description="the shop's item id (SKU)")
    post_id: str | None = Field(description="the creator's post that promotes the item, if any")
    kol_id: str | None = Field(description="the creator (KOL) of that post, if any")
    score: float
    reasons: list[str]
    source: str = Field(description="candidate source that proposed the item")


class FeedResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "6f1d2c0e9b8a4f3e8d7c6b5a49382716",
                    "user_id": "alice",
                    "arm": "default",
                    "degraded": False,
                    "model_version": 3,
                    "items": [
                        {
                            "item_id": "sku-1151",
                            "post_id": "post-473",
                            "kol_id": "mia_beauty",
                            "score": 2.41,
                            "reasons": ["because you follow @mia_beauty"],
                            "source": "followed_kol",
                        }
                    ],
                }
            ]
        }
    )

    request_id: str = Field(description="uuid4 hex; send it back with the events this page caused")
    user_id: str = Field(description="the requested user id, as a string")
    arm: str = Field(description="ranking variant (experiment arm) that built the page")
    degraded: bool = Field(description="true when the feature store was unavailable and the page is generic")
    model_version: int
    items: list[FeedItem]


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A built page: what :class:`FeedResponse` documents, serialized straight to JSON bytes.

    Why not the pydantic models on the hot path: building 20 ``FeedItem``s and a ``FeedResponse``,
    then letting FastAPI validate the returned model again against ``response_model`` cost more than
    everything else the service does around the ranker. The endpoint keeps ``response_model``, so the
    OpenAPI schema is unchanged; tests check that these bytes validate as a ``FeedResponse``.

    ``items`` hold int64 keys (what the ranker returns); ``labels`` (the served run's, ``{kind: {key:
    label}}``) turn them back into the shop's ids here, one dict lookup per id of the page.
    """

    request_id: str
    user_id: str
    arm: str
    degraded: bool
    model_version: int
    items: list[FeedEntry]
    labels: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        no_labels: Mapping[int, str] = {}
        item_l = self.labels.get("item", no_labels)
        post_l = self.labels.get("post", no_labels)
        kol_l = self.labels.get("kol", no_labels)
        body = {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "arm": self.arm,
            "degraded": self.degraded,
            "model_version": self.model_version,
            "items": [
                {
                    "item_id": item_l.get(e.item_id) or str(e.item_id),
                    "post_id": None if e.post_id is None else post_l.get(e.post_id) or str(e.post_id),
                    "kol_id": None if e.kol_id is None else kol_l.get(e.kol_id) or str(e.kol_id),
                    "score": e.score,
                    "reasons": e.reasons,
                    "source": e.source,
                }
                for e in self.items
            ],
        }
        return to_json(body, inf_nan_mode="null", fallback=_plain_scalar)  # as pydantic dumps JSON


def _plain_scalar(value: Any) -> Any:
    """numpy scalars (``np.float32`` scores, ``np.int64`` ids) as the Python numbers they hold."""
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"cannot serialize {type(value).__name__} in a feed page")
    return item()


class EventIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": "alice", "item_id": "sku-1151", "action": "click", "kol_id": "mia_beauty"},
                {"user_id": 42, "item_id": 7, "action": "buy", "value": 19.9, "request_id": "6f1d2c0e"},
            ]
        },
    )

    ts: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_TS,
        description="unix seconds (up to the year 3000); default: now",
    )
    user_id: Id
    item_id: Id
    action: str = Field(description="what the user did", json_schema_extra={"enum": list(ACTION_NAMES)})
    post_id: OptionalId = None
    kol_id: OptionalId = None
    to_user_id: OptionalId = Field(default=None, description="share: the friend it went to")
    request_id: str | None = Field(default=None, max_length=64, description="feed response that showed it")
    value: float | None = Field(
        default=None, strict=True, ge=-MAX_VALUE, le=MAX_VALUE, description="buy: order value"
    )

    @field_validator("action")
    @classmethod
    def _known_action(cls, v: str) -> str:
        if v not in ACTION_NAMES:
            raise ValueError(f"unknown action {v!r}; expected one of {', '.join(ACTION_NAMES)}")
        return v

    @field_validator("ts", "value")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("ts")
    @classmethod
    def _positive_ts(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("must be unix seconds (>= 0)")
        return v


class EventBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "user_id": "alice",
                            "item_id": "sku-1151",
                            "action": "click",
                            "kol_id": "mia_beauty",
                        },
                        {"user_id": "alice", "item_id": "sku-1151", "action": "buy", "value": 19.9},
                    ]
                }
            ]
        },
    )

    events: list[EventIn] = Field(default=..., min_length=1, max_length=MAX_EVENTS_PER_BATCH)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        # Checked before validating each event so a huge batch is refused cheaply and clearly.
        if isinstance(data, dict):
            events = data.get("events")
            if isinstance(events, list) and len(events) > MAX_EVENTS_PER_BATCH:
                raise ValueError(
                    f"too many events: {len(events)} in one batch, at most {MAX_EVENTS_PER_BATCH}; split it"
                )
        return data


class EventsAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 2}]})

    accepted: int


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"run_dir": "20261203-132731-world_als-v2"}]},
    )

    run_dir: str = Field(default=..., min_length=1, max_length=4_096, description="a run dir under runs_root")


_MODEL_EXAMPLE: dict[str, Any] = {
    "run_id": "20261203-132731-world_als-v2",
    "version": 2,
    "run_dir": "/srv/kolfeed/runs/20261203-132731-world_als-v2",
    "loaded_at": 1796304972.17,
}


_PREVIOUS_EXAMPLE: dict[str, Any] = {**_MODEL_EXAMPLE, "version": 1}


class ModelInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_MODEL_EXAMPLE]})

    run_id: str
    version: int
    run_dir: str
    loaded_at: float


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"previous": _PREVIOUS_EXAMPLE, "current": _MODEL_EXAMPLE}]}
    )

    previous: ModelInfo | None
    current: ModelInfo


class ErrorResponse(BaseModel):
    """Every 4xx/5xx the service sends: one line saying what is wrong."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "no model loaded"}]})

    detail: str


class FieldError(BaseModel):
    loc: str = Field(description="where: 'query limit', 'body events.0.action', ...")
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A 422: ``detail`` names every bad field in one line; ``errors`` lists them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "query limit: Input should be less than or equal to 100",
                    "errors": [
                        {
                            "loc": "query limit",
                            "msg": "Input should be less than or equal to 100",
                            "type": "less_than_equal",
                        }
                    ],
                }
            ]
        }
    )

    detail: str
    errors: list[FieldError] = Field(default_factory=list)

"""The data model in one place: the action vocabulary and the columns of every table.

Adding an action is one line in ``ACTIONS`` (name and default training weight); codes are the
position in that tuple, so append new actions at the end to keep stored codes stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class ActionSpec:
    name: str
    default_weight: float
    negative: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("impression", 0.0),
    ActionSpec("click", 1.0),
    ActionSpec("like", 1.5),
    ActionSpec("save", 2.0),
    ActionSpec("cart", 3.0),
    ActionSpec("share", 4.0),
    ActionSpec("buy", 6.0),
    ActionSpec("hide", -4.0, negative=True),
)

ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
ACTION_CODE: dict[str, int] = {a.name: i for i, a in enumerate(ACTIONS)}
DEFAULT_ACTION_WEIGHTS: dict[str, float] = {a.name: a.default_weight for a in ACTIONS}


def action_code(name: str) -> int:
    try:
        return ACTION_CODE[name]
    except KeyError:
        raise ValueError(f"unknown action {name!r}; expected one of {', '.join(ACTION_NAMES)}") from None


# Leading categories of social commerce (DESIGN.md) first, then a long tail.
CATEGORIES: tuple[str, ...] = (
    "mother_baby",
    "beauty",
    "home",
    "food",
    "apparel",
    "health",
    "electronics",
    "sports",
    "pets",
    "books",
    "music",
    "travel",
)

NO_ID = -1
"""In-memory sentinel for a missing id (files store a null)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    """For string columns: the closed vocabulary of values."""
    id_kind: str | None = None
    """For id columns: what the id names (``user``, ``item``, ``kol``, ``post``, ``merchant``). Files
    may hold strings or integers; loaders turn them into int64 keys (:mod:`recsys.ids`), so the
    column's type in memory stays ``int64``, and keep the labels of hashed string ids."""


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    lenient: bool = False
    """Lenient tables (event logs) skip bad rows with a counted report; strict tables reject the file."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])


ID_KINDS: tuple[str, ...] = ("user", "item", "kol", "post", "merchant")


def id_column(name: str, kind: str, *, nullable: bool = False) -> Column:
    """An external-id column: strings or integers in files, int64 keys in memory."""
    if kind not in ID_KINDS:
        raise ValueError(f"unknown id kind {kind!r}; expected one of {', '.join(ID_KINDS)}")
    return Column(name, pa.int64(), nullable=nullable, id_kind=kind)


UNKNOWN_CATEGORY = "unknown"
"""The category of an item the shop's catalogue does not describe (``kolfeed data import`` writes it):
the ranker treats it as no category (no per-category cap, no "trending in ..." reason)."""

# Ids are external ids (strings or integers in files) held as int64 keys (recsys/ids.py);
# timestamps are int64 unix seconds; money is float64.
USERS = TableSchema(
    "users",
    (
        id_column("user_id", "user"),
        Column("created_at", pa.int64()),
        Column("segment", pa.string()),
    ),
)
ITEMS = TableSchema(
    "items",
    (
        id_column("item_id", "item"),
        Column("category", pa.string()),
        Column("brand", pa.string()),
        Column("price", pa.float64()),
        id_column("merchant_id", "merchant"),
        Column("in_stock", pa.bool_()),
    ),
)
KOLS = TableSchema(
    "kols",
    (
        id_column("kol_id", "kol"),
        Column("verticals", pa.string()),  # '|'-separated categories
    ),
)
POSTS = TableSchema(
    "posts",
    (
        id_column("post_id", "post"),
        id_column("kol_id", "kol"),
        id_column("item_id", "item"),
        Column("created_at", pa.int64()),
    ),
)
FOLLOWS = TableSchema(
    "follows",
    (
        id_column("user_id", "user"),
        id_column("kol_id", "kol"),
        Column("ts", pa.int64()),
    ),
)
FRIENDS = TableSchema(
    "friends",
    (
        id_column("user_id", "user"),
        id_column("friend_id", "user"),
    ),
)
EVENTS = TableSchema(
    "events",
    (
        Column("ts", pa.int64()),
        id_column("user_id", "user"),
        id_column("item_id", "item"),
        Column("action", pa.string(), allowed=ACTION_NAMES),
        id_column("post_id", "post", nullable=True),
        id_column("kol_id", "kol", nullable=True),
        id_column("to_user_id", "user", nullable=True),
        Column("request_id", pa.string(), nullable=True),
        Column("value", pa.float64(), nullable=True),
    ),
    lenient=True,
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (USERS, ITEMS, KOLS, POSTS, FOLLOWS, FRIENDS, EVENTS)}

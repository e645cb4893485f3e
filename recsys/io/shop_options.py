"""What `kolfeed data import` is told (the shop's column and event names, files, split) and what it
reports (rows read, kept, skipped per reason; defaults used; the split), plus its error type.

The defaults written for missing catalogue values live here too: they are part of the data contract
(``docs/DATA.md``, checked by ``tests/test_data_contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.io.errors import DataError
from recsys.io.timestamps import iso
from recsys.schema import ACTION_NAMES, UNKNOWN_CATEGORY

SKIP = "skip"
"""``--actions name=skip``: rows with that event name are dropped and counted, not an error."""
EVENT_REQUIRED: tuple[str, ...] = ("ts", "user_id", "item_id", "action")
EVENT_OPTIONAL: tuple[str, ...] = ("post_id", "kol_id", "to_user_id", "request_id", "value")
ID_FIELDS: tuple[str, ...] = ("user_id", "item_id", "post_id", "kol_id", "to_user_id")
ITEM_FIELDS: tuple[str, ...] = ("category", "brand")
"""Item attributes an events file may carry on each row (public logs often have a category column):
they describe items that have no catalogue row (the item's latest value wins)."""
DEFAULT_ITEM: dict[str, Any] = {
    "category": UNKNOWN_CATEGORY,
    "brand": "unknown",
    "price": 0.0,
    "merchant_id": "0",
    "in_stock": True,
}
"""Catalogue values of items with no catalogue row (or an empty cell); written to ``world.json``."""
DEFAULT_SEGMENT = "unknown"
DEFAULT_VERTICALS = ""
DUPLICATE = "duplicate (same user, item, action and ts as an earlier row)"
WRONG_FIELDS = "wrong field count"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}
BLOCK_BYTES = 16 << 20
PARQUET_BATCH = 1 << 20


class ShopImportError(DataError):
    """The shop's data cannot be imported as given; the message says what to change."""


# ------------------------------------------------------------------------------------------- options


def parse_pairs(text: str | None, option: str) -> dict[str, str]:
    """``"a=b,c=d"`` → ``{"a": "b", "c": "d"}``; a malformed pair names the option."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ShopImportError(f"{option}: {part.strip()!r} is not name=value")
        if key in out:
            raise ShopImportError(f"{option}: {key!r} is given twice")
        out[key] = value
    return out


def column_map(text: str | None) -> dict[str, str]:
    """``--map user_id=customer_id,...``: our event field → the shop's column name."""
    pairs = parse_pairs(text, "--map")
    known = EVENT_REQUIRED + EVENT_OPTIONAL + ITEM_FIELDS
    for key in pairs:
        if key not in known:
            raise ShopImportError(f"--map: unknown field {key!r}; expected one of {', '.join(known)}")
    return pairs


def action_map(text: str | None) -> dict[str, str]:
    """``--actions purchase=buy,page_view=skip``: the shop's event name → our action (or skip)."""
    pairs = parse_pairs(text, "--actions")
    for name, action in pairs.items():
        if action != SKIP and action not in ACTION_NAMES:
            raise ShopImportError(
                f"--actions: {name}={action}: unknown action {action!r}; "
                f"expected one of {', '.join(ACTION_NAMES)} or {SKIP}"
            )
    return pairs


@dataclass
class ImportOptions:
    events: Path
    out: Path
    columns: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    items: Path | None = None
    creators: Path | None = None
    posts: Path | None = None
    follows: Path | None = None
    friends: Path | None = None
    split_at: str | None = None
    test_fraction: float = 0.2
    overwrite: bool = False
    progress: bool = False
    header: list[str] | None = None
    """Column names of a CSV file that has no header line (``--columns``)."""
    delimiter: str = ","
    block_bytes: int = BLOCK_BYTES

    def source(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class ImportReport:
    """What the import read, kept and skipped (per reason), and what it wrote."""

    events_file: str
    timestamp_format: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    """Kept events per action (our names)."""
    event_names: dict[str, str] = field(default_factory=dict)
    """The shop's event name → our action or ``skip``, as applied."""
    users: int = 0
    items: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    """Rows written per table."""
    defaults: dict[str, int] = field(default_factory=dict)
    """How many rows got a recorded default, per what was filled (e.g. ``items: no catalogue row``)."""
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_file": self.events_file,
            "timestamp_format": self.timestamp_format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_skipped": self.rows_skipped,
            "skipped": dict(self.skipped),
            "actions": dict(self.actions),
            "event_names": dict(self.event_names),
            "users": self.users,
            "items": self.items,
            "tables": dict(self.tables),
            "defaults": dict(self.defaults),
            "split": dict(self.split),
        }

    def lines(self) -> list[str]:
        out = [
            f"read {self.rows_read:,} rows from {self.events_file} (timestamps: {self.timestamp_format})",
            f"kept {self.rows_kept:,}, skipped {self.rows_skipped:,}",
        ]
        for reason, count in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  skipped {count:,}: {reason}")
        kept = ", ".join(f"{a} {n:,}" for a, n in self.actions.items() if n)
        out.append(f"events per action: {kept or 'none'}")
        out.append(f"users {self.users:,}, items {self.items:,}")
        for what, count in self.defaults.items():
            out.append(f"  defaults used: {count:,} {what}")
        s = self.split
        if s:
            out.append(
                f"split at {iso(s['cut_ts'])} (ts {s['cut_ts']}): train {s['n_train']:,} events, "
                f"test {s['n_test']:,} events"
            )
        return out

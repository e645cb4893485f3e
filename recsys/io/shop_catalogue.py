"""The catalogue and social tables of an import (items, creators, posts, follows, friends): read in
kolfeed's column names or the shop's, ids as text, gaps filled with recorded defaults, and completed
so that every id the events and social tables reference resolves (counted in the import report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from recsys.io.shop_events import as_text, id_problems, true_mask
from recsys.io.shop_options import (
    DEFAULT_ITEM,
    DEFAULT_SEGMENT,
    DEFAULT_VERTICALS,
    ITEM_FIELDS,
    ImportOptions,
    ImportReport,
    ShopImportError,
)
from recsys.io.tables import table_format
from recsys.io.timestamps import detect_format, to_unix_seconds

# ------------------------------------------------------------------------------------- side tables


@dataclass(frozen=True)
class _Side:
    name: str
    required: tuple[str, ...]
    optional: dict[str, Any]
    ids: tuple[str, ...]
    times: tuple[str, ...] = ()


SIDES: dict[str, _Side] = {
    "items": _Side("items", ("item_id",), dict(DEFAULT_ITEM), ("item_id", "merchant_id")),
    "kols": _Side("kols", ("kol_id",), {"verticals": DEFAULT_VERTICALS}, ("kol_id",)),
    "posts": _Side(
        "posts",
        ("post_id", "kol_id", "item_id"),
        {"created_at": None},
        ("post_id", "kol_id", "item_id"),
        ("created_at",),
    ),
    "follows": _Side("follows", ("user_id", "kol_id"), {"ts": None}, ("user_id", "kol_id"), ("ts",)),
    "friends": _Side("friends", ("user_id", "friend_id"), {}, ("user_id", "friend_id")),
}


def _read_whole(path: Path) -> pa.Table:
    if not path.is_file():
        raise ShopImportError(f"{path}: no such file")
    try:
        if table_format(path) == "parquet":
            return pq.read_table(path)
        return pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(strings_can_be_null=True, null_values=[""]),
            read_options=pcsv.ReadOptions(use_threads=True),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise ShopImportError(f"{path}: cannot read ({exc})") from None


def read_side(path: Path, side: _Side, opts: ImportOptions, first_ts: int, report: ImportReport) -> pa.Table:
    """A catalogue/social file with our column names (or the shop's, as given to ``--map``), ids as
    text, missing optional values filled with recorded defaults; a missing id is an error."""
    raw = _read_whole(path)
    renames = {opts.columns[f]: f for f in side.required + tuple(side.optional) if f in opts.columns}
    raw = raw.rename_columns(
        [renames[c] if c in renames and renames[c] not in raw.column_names else c for c in raw.column_names]
    )
    missing = [c for c in side.required if c not in raw.column_names]
    if missing:
        raise ShopImportError(
            f"{path}: no column(s) {', '.join(map(repr, missing))} for {side.name} "
            f"(the file has: {', '.join(raw.column_names)})"
        )
    is_csv = table_format(path) == "csv"
    columns: dict[str, pa.Array] = {}
    for name in side.required + tuple(side.optional):
        present = name in raw.column_names
        values = raw.column(name).combine_chunks() if present else pa.nulls(raw.num_rows)
        if name in side.ids:
            text = as_text(values) if present else pa.nulls(raw.num_rows, pa.string())
            missing_id, bad = id_problems(text)
            if name in side.required and (missing_id | bad).any():
                row = int(np.flatnonzero(missing_id | bad)[0])
                line = f"row {row + 2}" if is_csv else f"row {row + 1}"
                what = "empty" if missing_id[row] else f"{text[row].as_py()[:40]!r} is not a valid id"
                raise ShopImportError(f"{path}, {line}, column {name!r}: {what}")
            if name not in side.required:
                fill = side.optional[name]
                filled = int(missing_id.sum())
                if filled:
                    report.defaults[f"{side.name}.{name} empty → {fill!r}"] = filled
                text = pc.if_else(pa.array(missing_id), pa.scalar(str(fill)), text)
            columns[name] = text
        elif name in side.times:
            fmt = detect_format(values) if present else None
            if fmt is None:
                ts = pa.array(np.full(raw.num_rows, first_ts, dtype=np.int64))
                filled = raw.num_rows
            else:
                ts, bad = to_unix_seconds(values, fmt)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    line = f"row {row + 2}" if is_csv else f"row {row + 1}"
                    raise ShopImportError(
                        f"{path}, {line}, column {name!r}: {values[row].as_py()!r} is not a timestamp"
                    )
                filled = ts.null_count
                ts = pc.fill_null(ts, first_ts)
            if filled:
                report.defaults[f"{side.name}.{name} empty → first event time"] = filled
            columns[name] = ts
        else:
            default = side.optional[name]
            target = _default_type(default)
            converted = _convert_optional(path, name, values, target, is_csv)
            filled = converted.null_count
            if filled:
                report.defaults[f"{side.name}.{name} empty → {default!r}"] = filled
                converted = pc.fill_null(converted, pa.scalar(default, target))
            columns[name] = converted
    return pa.table(columns)


def _default_type(default: Any) -> pa.DataType:
    if isinstance(default, bool):
        return pa.bool_()
    if isinstance(default, float):
        return pa.float64()
    return pa.string()


def _convert_optional(path: Path, name: str, values: pa.Array, target: pa.DataType, is_csv: bool) -> pa.Array:
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), target)
    if pa.types.is_string(target):
        return as_text(values)
    if pa.types.is_boolean(target) and not pa.types.is_boolean(values.type):
        text = pc.utf8_lower(as_text(values))
        truth = pc.is_in(text, value_set=pa.array(["true", "1", "yes", "y", "t"]))
        known = pc.or_(truth, pc.is_in(text, value_set=pa.array(["false", "0", "no", "n", "f"])))
        bad = true_mask(pc.is_valid(text)) & ~true_mask(known)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            line = f"row {row + 2}" if is_csv else f"row {row + 1}"
            raise ShopImportError(f"{path}, {line}, column {name!r}: {text[row].as_py()!r} is not true/false")
        return pc.if_else(pc.is_valid(text), truth, pa.scalar(None, pa.bool_()))
    try:
        out = pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ShopImportError(f"{path}, column {name!r}: values are not {target}") from None
    if pa.types.is_floating(target):
        finite = true_mask(pc.is_finite(out)) | ~true_mask(pc.is_valid(out))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            line = f"row {row + 2}" if is_csv else f"row {row + 1}"
            raise ShopImportError(f"{path}, {line}, column {name!r}: not a finite number")
    return out


def _merge_ids(known: pa.Array, extra: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(ids in ``extra`` not in ``known`` (distinct), all ids)."""
    new = pc.unique(extra.filter(pc.invert(pc.is_in(extra, value_set=known))))
    return new, pa.concat_arrays([known, new.cast(known.type)])


def _distinct(*arrays: pa.Array | pa.ChunkedArray) -> pa.Array:
    parts = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return pc.unique(pa.concat_arrays([p.cast(pa.string()) for p in parts]).drop_null())


def assemble(
    events: pa.Table, sides: dict[str, pa.Table], report: ImportReport, first_ts: int
) -> dict[str, pa.Table]:
    """users/items/kols/... tables covering every id the events and social tables reference; ids
    nobody listed are added with recorded defaults (counted), so every reference resolves."""
    ev_users = _distinct(
        events.column("user_id"),
        *([events.column("to_user_id")] if "to_user_id" in events.column_names else []),
    )
    social_users = [
        sides[t].column(c)
        for t, c in (("follows", "user_id"), ("friends", "user_id"), ("friends", "friend_id"))
        if t in sides
    ]
    users = _distinct(ev_users, *social_users)
    first = events.group_by("user_id").aggregate([("ts", "min")])
    created = pc.index_in(users, value_set=first.column("user_id"))
    first_seen = first.column("ts_min").combine_chunks()
    created_at = pc.fill_null(pc.take(first_seen, created), first_ts)
    no_event = int(pc.sum(pc.is_null(created)).as_py() or 0)
    if no_event:
        report.defaults[
            "users without events (from follows/friends/shares): created_at = first event time"
        ] = no_event
    out: dict[str, pa.Table] = {
        "users": pa.table(
            {"user_id": users, "created_at": created_at, "segment": pa.array([DEFAULT_SEGMENT] * len(users))}
        )
    }

    ev_items = _distinct(
        events.column("item_id"), *([sides["posts"].column("item_id")] if "posts" in sides else [])
    )
    catalogue = sides.get("items")
    if catalogue is None:
        catalogue = pa.table(
            {"item_id": pa.array([], pa.string())}
            | {k: pa.array([], _default_type(v)) for k, v in DEFAULT_ITEM.items()}
        )
    catalogue = _unique_rows(catalogue, "item_id", "items", report)
    new_items, _ = _merge_ids(catalogue.column("item_id").combine_chunks(), ev_items)
    if len(new_items):
        report.defaults[
            "items with no catalogue row: " + ", ".join(f"{k}={v!r}" for k, v in DEFAULT_ITEM.items())
        ] = len(new_items)
        filler = pa.table(
            {"item_id": new_items.cast(pa.string())}
            | {k: pa.array([v] * len(new_items), _default_type(v)) for k, v in DEFAULT_ITEM.items()}
        )
        filler = _with_event_attributes(filler, events, report)
        catalogue = pa.concat_tables([catalogue.select(filler.column_names).cast(filler.schema), filler])
    out["items"] = catalogue

    kol_refs = [sides[t].column("kol_id") for t in ("posts", "follows") if t in sides]
    if "kol_id" in events.column_names:
        kol_refs.append(events.column("kol_id"))
    if "kols" in sides or kol_refs:
        kols = sides.get(
            "kols", pa.table({"kol_id": pa.array([], pa.string()), "verticals": pa.array([], pa.string())})
        )
        kols = _unique_rows(kols, "kol_id", "kols", report)
        if kol_refs:
            new_kols, _ = _merge_ids(kols.column("kol_id").combine_chunks(), _distinct(*kol_refs))
            if len(new_kols):
                report.defaults["creators referenced but not listed: verticals ''"] = len(new_kols)
                kols = pa.concat_tables(
                    [
                        kols,
                        pa.table(
                            {
                                "kol_id": new_kols.cast(pa.string()),
                                "verticals": pa.array([DEFAULT_VERTICALS] * len(new_kols)),
                            }
                        ),
                    ]
                )
        out["kols"] = kols
    for name in ("posts", "follows", "friends"):
        if name in sides:
            out[name] = (
                _unique_rows(sides[name], "post_id", "posts", report) if name == "posts" else sides[name]
            )
    return out


def _with_event_attributes(filler: pa.Table, events: pa.Table, report: ImportReport) -> pa.Table:
    """Items without a catalogue row take the category/brand their latest event names, if any."""
    for name in ITEM_FIELDS:
        column = f"item_{name}"
        if column not in events.column_names:
            continue
        named = events.select(["item_id", column]).filter(pc.is_valid(events.column(column)))
        latest = named.group_by("item_id", use_threads=False).aggregate([(column, "last")])
        where = pc.index_in(filler.column("item_id"), value_set=latest.column("item_id"))
        values = pc.take(latest.column(f"{column}_last"), where)
        found = int(pc.sum(pc.is_valid(values)).as_py() or 0)
        if found:
            report.defaults[f"items with no catalogue row: {name} from their events"] = found
            index = filler.column_names.index(name)
            filler = filler.set_column(index, name, pc.coalesce(values, filler.column(name)))
    return filler


def drop_unknown_posts(events: pa.Table, posts: pa.Table | None, report: ImportReport) -> pa.Table:
    """Empty an event's post_id that no posts row holds (a post needs a creator and an item, which
    an event alone does not give); counted, the event itself is kept."""
    if "post_id" not in events.column_names:
        return events
    column = events.column("post_id")
    known = posts.column("post_id") if posts is not None else pa.array([], pa.string())
    unknown = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=known)))
    count = int(pc.sum(unknown).as_py() or 0)
    if not count:
        return events
    report.defaults["events whose post_id is not in posts: post_id emptied"] = count
    emptied = pc.if_else(unknown, pa.scalar(None, pa.string()), column)
    return events.set_column(events.column_names.index("post_id"), "post_id", emptied)


def _unique_rows(table: pa.Table, key: str, name: str, report: ImportReport) -> pa.Table:
    """First row per id (a repeated catalogue row is counted, not silently merged)."""
    ids = table.column(key).combine_chunks()
    encoded = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(encoded, return_index=True)
    if len(first) == table.num_rows:
        return table
    report.defaults[f"{name}: repeated {key} rows, first kept"] = table.num_rows - len(first)
    return table.take(pa.array(np.sort(first)))

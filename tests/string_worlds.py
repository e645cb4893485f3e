"""A generated world rewritten with a shop's kind of ids (UUID customers, SKU items, handles), for
tests that run string ids through loaders, training, the run directory and serving."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from recsys.ids import id_key
from recsys.io.tables import find_table_file
from recsys.schema import EVENTS, TABLES

NAMESPACE = uuid.UUID("6f1c1d6e-2d1b-4c53-9a1e-0c5b3a9d7e21")


def user_label(key: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"user-{key}"))


LABEL_OF = {
    "user": user_label,
    "item": lambda key: f"SKU-{key:06d}",
    "kol": lambda key: f"@creator{key}",
    "post": lambda key: f"post-{key}",
    "merchant": lambda key: f"shop {key}",
}


def string_key(kind: str, key: int) -> int:
    """The key the rewritten world holds for the original integer ``key`` of ``kind``."""
    return id_key(LABEL_OF[kind](key))


def _rewrite(table: pa.Table, schema_name: str) -> pa.Table:
    schema = TABLES[schema_name]
    for col in schema.columns:
        if col.id_kind is None or col.name not in table.column_names:
            continue
        label = LABEL_OF[col.id_kind]
        values = [None if v is None else label(v) for v in table.column(col.name).to_pylist()]
        index = table.schema.get_field_index(col.name)
        table = table.set_column(index, col.name, pa.array(values, pa.string()))
    return table


def stringify_world(src: Path, dst: Path, fmt: str = "parquet") -> Path:
    """Copy the world at ``src`` to ``dst`` with every id a string; tables as ``fmt`` (parquet/csv)."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "split").mkdir(exist_ok=True)
    names = [(name, name, "") for name in TABLES] + [("events", part, "split/") for part in ("train", "test")]
    for schema_name, name, sub in names:
        found = find_table_file(src / sub, name) if sub else find_table_file(src, name)
        if found is None:
            continue
        table = _rewrite(pq.read_table(found), schema_name if not sub else EVENTS.name)
        out = dst / f"{sub}{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, out)
        else:
            pcsv.write_csv(table, out)
    if (src / "world.json").is_file():
        meta = json.loads((src / "world.json").read_text())
        (dst / "world.json").write_text(json.dumps(meta))
    return dst

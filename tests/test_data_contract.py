"""docs/DATA.md is the written data contract: its tables must say exactly what recsys/schema.py enforces
(every column, its type, required or not) and what `kolfeed data import` fills in."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from recsys.io.shop_import import DEFAULT_ITEM, DEFAULT_SEGMENT
from recsys.schema import ACTION_NAMES, TABLES, Column

DOC = Path(__file__).resolve().parents[1] / "docs" / "DATA.md"


def _doc_tables() -> dict[str, list[dict[str, str]]]:
    """``## name`` sections → rows of their first markdown table (header names as keys)."""
    out: dict[str, list[dict[str, str]]] = {}
    section: str | None = None
    header: list[str] | None = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^## (\w+)\s*$", line)
        if heading:
            section, header = heading.group(1), None
        elif section is None or (section in out and header is None):
            continue
        elif not line.startswith("|"):
            if header is not None:  # the section's first table ended
                section, header = None, None
        else:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header, out[section] = cells, []
            elif not set("".join(cells)) <= set("-: "):
                out[section].append(dict(zip(header, cells, strict=True)))
    return out


def _doc_type(col: Column) -> str:
    if col.id_kind is not None:
        return "id"
    if col.allowed is not None:
        return "action"
    return {pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool", pa.string(): "string"}[col.type]


def test_every_table_of_the_schema_has_a_section_in_the_contract() -> None:
    assert set(TABLES) <= set(_doc_tables())


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_contract_lists_each_column_with_its_type_and_whether_it_is_required(name: str) -> None:
    rows = _doc_tables()[name]
    documented = [(r["column"], r["type"], r["required"]) for r in rows]
    expected = [(c.name, _doc_type(c), "no" if c.nullable else "yes") for c in TABLES[name].columns]
    assert documented == expected


def test_the_documented_import_defaults_are_the_ones_the_import_writes() -> None:
    items = {r["column"]: r["default"].strip("`") for r in _doc_tables()["items"]}
    for column, value in DEFAULT_ITEM.items():
        assert items[column] == (str(value).lower() if isinstance(value, bool) else str(value)), column
    users = {r["column"]: r["default"].strip("`") for r in _doc_tables()["users"]}
    assert users["segment"] == DEFAULT_SEGMENT


def test_the_documented_actions_are_the_schema_actions() -> None:
    action = next(r for r in _doc_tables()["events"] if r["column"] == "action")
    assert re.findall(r"\w+", action["meaning"].split("one of", 1)[1]) == list(ACTION_NAMES)

"""Property tests: whatever a CSV/Parquet file holds, the loader returns a table in the schema or
raises TableError (never another exception), and lenient loading accounts for every row."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.io import TableError, load_table
from recsys.schema import ACTION_NAMES, EVENTS, ITEMS, TableSchema

SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

GARBAGE = st.text(alphabet=st.sampled_from(list("ab x-.,\"'\t0123459eE+_é中")), max_size=6)


def good_cell(schema: TableSchema, name: str) -> st.SearchStrategy[str]:
    col = next(c for c in schema.columns if c.name == name)
    if col.allowed is not None:
        return st.sampled_from(col.allowed)
    if pa.types.is_integer(col.type):
        return st.integers(-(2**40), 2**40).map(str)
    if pa.types.is_floating(col.type):
        return st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr)
    if pa.types.is_boolean(col.type):
        return st.sampled_from(["true", "false", "1", "0", "True"])
    return st.text(alphabet="abcxyz_", min_size=1, max_size=5)


@st.composite
def csv_text(draw: st.DrawFn, schema: TableSchema, keep_header: bool) -> tuple[str, int]:
    """CSV with random corruptions; returns the text and how many non-blank data lines it has."""
    names = list(schema.column_names)
    if not keep_header:
        names = draw(st.permutations(names))
        if draw(st.booleans()):
            names = names[: draw(st.integers(0, len(names)))]
        if draw(st.booleans()):
            names.append("extra")
    lines = [",".join(names)]
    rows = 0
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["good", "good", "garbage", "short", "long", "blank"]))
        if kind == "blank":
            lines.append("")
            continue
        rows += 1
        cells = [draw(good_cell(schema, n)) if n in schema.column_names else draw(GARBAGE) for n in names]
        if kind == "garbage" and cells:
            cells[draw(st.integers(0, len(cells) - 1))] = draw(GARBAGE)
        elif kind == "short" and cells:
            cells = cells[:-1]
        elif kind == "long":
            cells.append("1")
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n", rows


def load_text(text: str, schema: TableSchema) -> object:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{schema.name}.csv"
        path.write_text(text, encoding="utf-8")
        return load_table(path, schema)


@SETTINGS
@given(data=csv_text(ITEMS, keep_header=False))
def test_strict_csv_returns_schema_table_or_table_error(data: tuple[str, int]) -> None:
    text, _ = data
    try:
        result = load_text(text, ITEMS)
    except TableError as err:
        assert err.file.endswith("items.csv")
        return
    assert result.table.schema == ITEMS.arrow_schema()  # type: ignore[attr-defined]
    assert result.report.skipped == {}  # type: ignore[attr-defined]


@SETTINGS
@given(data=csv_text(EVENTS, keep_header=True))
def test_lenient_csv_never_raises_for_bad_rows(data: tuple[str, int]) -> None:
    text, rows = data
    result = load_text(text, EVENTS)
    report = result.report  # type: ignore[attr-defined]
    assert report.kept_rows + report.skipped_rows == report.total_rows
    assert result.table.num_rows == report.kept_rows  # type: ignore[attr-defined]
    assert result.table.schema == EVENTS.arrow_schema()  # type: ignore[attr-defined]
    # every row is either kept or counted; a quoted field may merge lines, so only bound it
    assert report.total_rows <= rows


CORRUPTIONS = {
    "bad ts": lambda cells: ["soon", *cells[1:]],
    "bad action": lambda cells: [*cells[:3], "zzz", *cells[4:]],
    "null user_id": lambda cells: [cells[0], "", *cells[2:]],
    "bad value": lambda cells: [*cells[:8], "inf"],
    "wrong field count": lambda cells: cells[:-1],
}


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 10**9),
            st.integers(0, 99),
            st.sampled_from(ACTION_NAMES),
            st.sampled_from(["ok", "blank", *CORRUPTIONS]),
        ),
        max_size=12,
    )
)
def test_lenient_counts_match_known_corruptions(rows: list[tuple[int, int, str, str]]) -> None:
    lines = [",".join(EVENTS.column_names)]
    expected: dict[str, int] = {}
    kept_ts: list[int] = []
    for ts, user, action, fate in rows:
        if fate == "blank":
            lines.append("")
            continue
        cells = [str(ts), str(user), "5", action, "", "3", "", "req", "1.5"]
        if fate == "ok":
            kept_ts.append(ts)
        else:
            cells = CORRUPTIONS[fate](cells)
            expected[fate] = expected.get(fate, 0) + 1
        lines.append(",".join(cells))
    result = load_text("\n".join(lines) + "\n", EVENTS)
    report = result.report  # type: ignore[attr-defined]
    assert report.skipped == expected
    assert result.table.column("ts").to_pylist() == kept_ts  # type: ignore[attr-defined]
    assert report.total_rows == sum(1 for *_, fate in rows if fate != "blank")
    # the examples point at the lines holding those rows (header is line 1)
    for reason, found in report.examples.items():
        line_fates = [fate for *_, fate in rows]
        assert all(line_fates[line - 2] == reason for line in found)


@SETTINGS
@given(
    cells=st.lists(st.tuples(GARBAGE, GARBAGE, st.sampled_from([*ACTION_NAMES, "nope", ""])), max_size=10),
    lenient=st.booleans(),
)
def test_parquet_with_text_columns(cells: list[tuple[str, str, str]], lenient: bool) -> None:
    table = pa.table(
        {
            "ts": [c[0] for c in cells],
            "user_id": [c[1] for c in cells],
            "item_id": ["1"] * len(cells),
            "action": [c[2] for c in cells],
        }
    )
    schema = EVENTS if lenient else TableSchema("strict_events", EVENTS.columns)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        pq.write_table(table, path)
        try:
            result = load_table(path, schema)
        except TableError:
            assert not lenient
            return
    assert result.table.schema == schema.arrow_schema()
    assert result.report.kept_rows + result.report.skipped_rows == result.report.total_rows == len(cells)

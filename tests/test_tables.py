"""Known answers for the validating table loader and world loader (tiny hand-made files)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from kolfeed import commands_data
from recsys.io import DataError, TableError, load_table, load_world
from recsys.schema import EVENTS, ITEMS, USERS
from tests.service_harness import cli_app

ITEMS_HEADER = "item_id,category,brand,price,merchant_id,in_stock"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_column_names_column_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "item_id,category,brand,merchant_id,in_stock\n1,beauty,b,3,true\n")
    with pytest.raises(TableError) as info:
        load_table(path, ITEMS)
    message = str(info.value)
    assert "'price'" in message and str(path) in message
    assert "in_stock" in message  # lists what the file does have


def test_wrong_type_names_row_column_and_value(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", f"{ITEMS_HEADER}\n1,beauty,b,2.5,3,true\n2,home,c,abc,4,false\n")
    with pytest.raises(TableError) as info:
        load_table(path, ITEMS)
    err = info.value
    assert (err.row, err.column, err.value) == (3, "price", "abc")  # line 3 counting the header
    assert "row 3" in str(err) and "'price'" in str(err) and "'abc'" in str(err) and "float64" in str(err)


def test_strict_reports_the_first_bad_row_in_the_file(tmp_path: Path) -> None:
    text = f"{ITEMS_HEADER}\n1,beauty,b,2.5,3,true\n2,home,c,1.0,4,maybe\nx,home,c,zz,4,true\n"
    with pytest.raises(TableError) as info:
        load_table(write(tmp_path / "items.csv", text), ITEMS)
    assert (info.value.row, info.value.column, info.value.value) == (3, "in_stock", "maybe")


def test_strict_null_and_field_count_errors(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="row 3, column 'user_id': empty value"):
        load_table(write(tmp_path / "users.csv", "user_id,created_at,segment\n1,5,a\n,6,b\n"), USERS)
    with pytest.raises(TableError, match=r"row 4: expected 3 fields, found 2"):
        load_table(write(tmp_path / "u2.csv", "user_id,created_at,segment\n1,5,a\n\n2,6\n"), USERS)


def test_nan_price_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="column 'price'"):
        load_table(write(tmp_path / "items.csv", f"{ITEMS_HEADER}\n1,beauty,b,nan,3,true\n"), ITEMS)


def test_unsupported_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"\.parquet, \.csv, \.csv\.gz"):
        load_table(write(tmp_path / "items.json", "{}"), ITEMS)
    with pytest.raises(TableError, match="no such file"):
        load_table(tmp_path / "absent.parquet", ITEMS)
    with pytest.raises(TableError, match="not a readable Parquet"):
        load_table(write(tmp_path / "bad.parquet", "not parquet"), ITEMS)


def test_lenient_events_skip_and_count_bad_rows(tmp_path: Path) -> None:
    text = (
        "ts,user_id,item_id,action,extra\n"
        "1,2,3,click,x\n"  # line 2 ok
        "2,2,3,clik,x\n"  # 3 bad action
        "\n"  # 4 blank: not a row, still a line
        "x,2,3,buy,x\n"  # 5 bad ts
        "3,2,3,zap,x\n"  # 6 bad action
        "4,,3,buy,x\n"  # 7 null user_id
        "5,2\n"  # 8 wrong field count
        "6,1,1,share,x\n"  # 9 ok
        "7,1,1,Buy,x\n"  # 10 bad action (vocabulary is case-sensitive)
    )
    result = load_table(write(tmp_path / "events.csv", text), EVENTS)
    report = result.report
    assert report.skipped == {"bad action": 3, "bad ts": 1, "null user_id": 1, "wrong field count": 1}
    assert report.examples["bad action"] == [3, 6, 10]
    assert report.examples["bad ts"] == [5] and report.examples["wrong field count"] == [8]
    assert (report.total_rows, report.kept_rows) == (8, 2)
    assert report.extra_columns == ("extra",)
    assert report.absent_columns == ("post_id", "kol_id", "to_user_id", "request_id", "value")
    assert result.table.schema == EVENTS.arrow_schema()
    assert result.table.column("ts").to_pylist() == [1, 6]
    assert result.table.column("post_id").to_pylist() == [None, None]
    assert "skipped 3 (bad action)" in report.summary()


def events_table() -> pa.Table:
    return pa.table(
        {
            "ts": [10, 11, 12],
            "user_id": [1, 2, 3],
            "item_id": [5, 6, 7],
            "action": ["click", "buy", "share"],
            "post_id": [100, None, 101],
            "kol_id": [7, None, 8],
            "to_user_id": [None, None, 2],
            "request_id": ["r1", None, "r3"],
            "value": [None, 19.5, None],
        },
        schema=EVENTS.arrow_schema(),
    )


def test_parquet_and_csv_round_trip(tmp_path: Path) -> None:
    table = events_table()
    pq.write_table(table, tmp_path / "events.parquet")
    pcsv.write_csv(table, tmp_path / "events.csv")
    with gzip.open(tmp_path / "events.csv.gz", "wb") as handle:
        handle.write((tmp_path / "events.csv").read_bytes())
    for name in ("events.parquet", "events.csv", "events.csv.gz"):
        result = load_table(tmp_path / name, EVENTS)
        assert result.table.equals(table), name
        assert result.table.schema == EVENTS.arrow_schema()
        assert result.report.kept_rows == result.report.total_rows == 3


def test_parquet_types_are_cast_and_bad_values_named_by_data_row(tmp_path: Path) -> None:
    users = pa.table(
        {"segment": ["a", "b"], "user_id": pa.array([1, 2], pa.int32()), "created_at": [1.0, 2.0]}
    )
    pq.write_table(users, tmp_path / "users.parquet")
    loaded = load_table(tmp_path / "users.parquet", USERS).table
    assert loaded.schema == USERS.arrow_schema()  # reordered and cast
    assert loaded.column("created_at").to_pylist() == [1, 2]
    bad = pa.table({"user_id": [1, 2, 3], "created_at": [1.0, 2.0, 2.5], "segment": ["a", "b", "c"]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(TableError) as info:
        load_table(tmp_path / "bad.parquet", USERS)
    assert (info.value.row, info.value.column) == (3, "created_at")


def test_lenient_parquet_counts_bad_rows(tmp_path: Path) -> None:
    table = pa.table(
        {"ts": ["1", "b", "3"], "user_id": [1, 2, 3], "item_id": [1, 1, 1], "action": ["buy", "buy", "x"]}
    )
    pq.write_table(table, tmp_path / "events.parquet")
    report = load_table(tmp_path / "events.parquet", EVENTS).report
    assert report.skipped == {"bad ts": 1, "bad action": 1}
    assert report.examples == {"bad ts": [2], "bad action": [3]}


def make_world(root: Path, *, split: bool = True) -> None:
    root.mkdir()
    write(root / "users.csv", "user_id,created_at,segment\n1,0,mom\n2,0,student\n")
    write(root / "items.csv", f"{ITEMS_HEADER}\n5,beauty,b,9.5,1,true\n6,home,c,3,1,false\n")
    pq.write_table(events_table(), root / "events.parquet")
    write(root / "follows.csv", "user_id,kol_id,ts\n1,7,3\n")
    if split:
        (root / "split").mkdir()
        pq.write_table(events_table().slice(0, 2), root / "split" / "train.parquet")
        pq.write_table(events_table().slice(2), root / "split" / "test.parquet")
    (root / "truth").mkdir()
    (root / "world.json").write_text(json.dumps({"seed": 7, "scale": "tiny"}))


def test_load_world(tmp_path: Path) -> None:
    make_world(tmp_path / "w")
    world = load_world(tmp_path / "w")
    assert world.users.num_rows == 2 and world.items.num_rows == 2 and world.events.num_rows == 3
    assert world.follows.num_rows == 1
    assert world.absent == ("kols", "posts", "friends")
    assert world.friends.num_rows == 0 and world.friends.schema.names == ["user_id", "friend_id"]
    assert world.train_events is not None and world.train_events.num_rows == 2
    assert world.test_events is not None and world.test_events.num_rows == 1
    assert world.has_split and world.truth_dir == tmp_path / "w" / "truth"
    assert world.meta == {"seed": 7, "scale": "tiny"}
    assert set(world.reports) == {"users", "items", "events", "follows", "split/train", "split/test"}
    assert math.isclose(world.items.column("price").to_pylist()[0], 9.5)


def test_load_world_errors(tmp_path: Path) -> None:
    make_world(tmp_path / "w", split=False)
    assert load_world(tmp_path / "w").train_events is None
    (tmp_path / "w" / "split").mkdir()
    pq.write_table(events_table(), tmp_path / "w" / "split" / "train.parquet")
    with pytest.raises(DataError, match="not the other half"):
        load_world(tmp_path / "w")
    (tmp_path / "w" / "users.csv").unlink()
    with pytest.raises(TableError, match="required table 'users'"):
        load_world(tmp_path / "w")


def cli() -> typer.Typer:
    return cli_app(commands_data)


def test_cli_data_check(tmp_path: Path) -> None:
    runner = CliRunner()
    make_world(tmp_path / "w")
    loose = runner.invoke(cli(), ["data", "check", str(tmp_path / "w")])
    assert "3 of 3 rows kept" in loose.output
    # its events and follows name creators (kol_id 7) while it has no kols table: a dangling reference
    assert loose.exit_code == 1
    assert (
        "follows.csv, row 2, column 'kol_id': '7' is not in kols.kol_id (the table is absent)" in loose.output
    )
    path = write(tmp_path / "items.csv", f"{ITEMS_HEADER}\n1,beauty,b,abc,3,true\n")
    bad = runner.invoke(cli(), ["data", "check", str(path)])
    assert bad.exit_code == 1
    assert "row 2, column 'price'" in bad.output and "Traceback" not in bad.output
    events = write(tmp_path / "ev.csv", "ts,user_id,item_id,action\n1,1,1,nope\n")
    lenient = runner.invoke(cli(), ["data", "check", str(events), "--table", "events", "--json"])
    assert lenient.exit_code == 0
    assert json.loads(lenient.output)["skipped"] == {"bad action": 1}


def test_repeated_short_rows_get_their_own_line_numbers(tmp_path: Path) -> None:
    text = "ts,user_id,item_id,action\n1,1,1,buy\n7,7\n\n2,2,2,buy\n7,7\n1,1,1,buy,9\n3,3,3,x\n"
    report = load_table(write(tmp_path / "events.csv", text), EVENTS).report
    assert report.skipped == {"wrong field count": 3, "bad action": 1}
    assert report.examples == {"wrong field count": [3, 6, 7], "bad action": [8]}

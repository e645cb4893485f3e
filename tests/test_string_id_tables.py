"""Tables whose id columns hold a shop's own ids (UUIDs, SKUs) load as int64 keys with labels."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.id_labels import IdLabels
from recsys.ids import IdError, id_key
from recsys.io import TableError, load_table, load_world
from recsys.schema import EVENTS, ITEMS, POSTS, USERS

UUIDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(3)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_string_ids_become_their_keys_and_keep_their_labels(tmp_path: Path) -> None:
    text = "user_id,created_at,segment\n" + "".join(f"{u},5,a\n" for u in UUIDS) + "42,6,b\n"
    result = load_table(write(tmp_path / "users.csv", text), USERS)
    keys = result.table.column("user_id").to_pylist()
    assert keys == [id_key(u) for u in UUIDS] + [42]
    assert result.table.schema.field("user_id").type == pa.int64()
    assert result.labels.labels_of("user", np.array(keys)) == [*UUIDS, "42"]


def test_parquet_id_columns_may_be_strings_or_integers(tmp_path: Path) -> None:
    items = pa.table(
        {
            "item_id": ["SKU-001", "SKU-002", " 7 "],
            "category": ["beauty", "home", "food"],
            "brand": ["b", "b", "c"],
            "price": [1.0, 2.0, 3.0],
            "merchant_id": pa.array([3, 3, 4], pa.int32()),
            "in_stock": [True, False, True],
        }
    )
    pq.write_table(items, tmp_path / "items.parquet")
    result = load_table(tmp_path / "items.parquet", ITEMS)
    assert result.table.column("item_id").to_pylist() == [id_key("SKU-001"), id_key("SKU-002"), 7]
    assert result.table.column("merchant_id").to_pylist() == [3, 3, 4]
    assert result.labels.label("item", id_key("SKU-002")) == "SKU-002"
    assert len(result.labels) == 2  # "7" is its own key and needs no label


def test_negative_integer_ids_are_hashed_as_their_text(tmp_path: Path) -> None:
    posts = pa.table({"post_id": [-3, 5], "kol_id": [1, 1], "item_id": [2, 2], "created_at": [0, 0]})
    pq.write_table(posts, tmp_path / "posts.parquet")
    result = load_table(tmp_path / "posts.parquet", POSTS)
    assert result.table.column("post_id").to_pylist() == [id_key("-3"), 5]
    assert result.labels.label("post", id_key("-3")) == "-3"


def test_a_too_long_id_in_a_strict_table_names_file_row_and_column(tmp_path: Path) -> None:
    text = "user_id,created_at,segment\nalice,5,a\n" + "x" * 200 + ",6,b\n"
    with pytest.raises(TableError) as info:
        load_table(write(tmp_path / "users.csv", text), USERS)
    message = str(info.value)
    assert "users.csv" in message and "row 3" in message and "'user_id'" in message
    assert "longer than 128" in message


def test_bad_ids_in_events_are_counted_skips(tmp_path: Path) -> None:
    header = "ts,user_id,item_id,action,post_id,kol_id,to_user_id,request_id,value\n"
    rows = [
        f"1,{UUIDS[0]},SKU-1,click,,,,,\n",
        f"2,{'u' * 129},SKU-1,click,,,,,\n",
        f"3,{UUIDS[1]},SKU-2,share,,,{UUIDS[0]},,\n",
        f"4,{UUIDS[1]},SKU-2,buy,p-1,kol-a,,,\n",
    ]
    result = load_table(write(tmp_path / "events.csv", header + "".join(rows)), EVENTS)
    assert result.report.skipped == {"bad user_id": 1}
    assert result.report.examples["bad user_id"] == [3]
    table = result.table
    assert table.column("to_user_id").to_pylist() == [None, id_key(UUIDS[0]), None]
    assert table.column("kol_id").to_pylist() == [None, None, id_key("kol-a")]
    assert result.labels.label("kol", id_key("kol-a")) == "kol-a"
    assert result.labels.label("post", id_key("p-1")) == "p-1"
    assert set(result.labels.get("user")[1].tolist()) == {UUIDS[0], UUIDS[1]}


def test_non_printable_ids_are_skipped_with_the_column_as_reason(tmp_path: Path) -> None:
    events = pa.table(
        {
            "ts": [1, 2],
            "user_id": ["ok", "bell\x07"],
            "item_id": [1, 2],
            "action": ["click", "click"],
        }
    )
    pq.write_table(events, tmp_path / "events.parquet")
    result = load_table(tmp_path / "events.parquet", EVENTS)
    assert result.report.skipped == {"bad user_id": 1}
    assert result.table.column("user_id").to_pylist() == [id_key("ok")]


def test_labels_refuse_two_ids_sharing_a_key() -> None:
    labels = IdLabels()
    labels.add("item", np.array([-5, -7]), ["a", "b"])
    labels.add("item", np.array([-5]), ["a"])  # the same pair again is fine
    with pytest.raises(IdError, match="same key"):
        labels.add("item", np.array([-5]), ["c"])
    with pytest.raises(IdError, match="no label"):
        labels.labels_of("item", np.array([-9]))


def test_a_world_with_string_ids_loads_with_the_labels_of_every_table(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", f"user_id,created_at,segment\n{UUIDS[0]},0,a\n{UUIDS[1]},0,b\n")
    write(
        tmp_path / "items.csv",
        "item_id,category,brand,price,merchant_id,in_stock\nSKU-1,beauty,b,1.5,shop-a,true\n",
    )
    write(tmp_path / "kols.csv", "kol_id,verticals\n@anna,beauty\n")
    write(tmp_path / "posts.csv", "post_id,kol_id,item_id,created_at\npost-x,@anna,SKU-1,0\n")
    write(
        tmp_path / "events.csv",
        "ts,user_id,item_id,action,post_id,kol_id\n"
        f"1,{UUIDS[0]},SKU-1,click,post-x,@anna\n2,{UUIDS[1]},SKU-1,buy,,\n",
    )
    world = load_world(tmp_path)
    assert world.items.column("item_id").to_pylist() == [id_key("SKU-1")]
    assert world.posts.column("kol_id").to_pylist() == [id_key("@anna")]
    assert world.labels.label("kol", id_key("@anna")) == "@anna"
    assert world.labels.label("merchant", id_key("shop-a")) == "shop-a"
    assert world.labels.labels_of("user", world.users.column("user_id").to_numpy()) == UUIDS[:2]

"""`kolfeed data import`: a shop's own export becomes a world directory that training reads as is."""

from __future__ import annotations

import gzip
import json
from datetime import UTC
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from recsys.io.shop_import import ImportOptions, ShopImportError, action_map, column_map, import_shop
from recsys.io.world import load_world
from tests.service_harness import cli_app

MAP = "user_id=customer_id,item_id=sku,action=event_type,ts=timestamp"
ACTIONS = "purchase=buy,view=click,add_to_cart=cart,favorite=save,page_view=skip"
SHOP_CSV = """customer_id,sku,event_type,timestamp,channel
1,10,purchase,1704067200000,web
1,11,view,1704067300000,web
2,10,view,1704067400000,app
2,10,view,1704067400000,app
2,12,add_to_cart,1704068400000,app
3,12,purchase,1704069400000,web
3,13,page_view,1704069500000,web
,13,view,1704069500000,web
4,13,view,notatime,web
4,14,view
5,14,favorite,1704079500000,app
"""


def _app() -> typer.Typer:
    from kolfeed import commands_data

    return cli_app(commands_data)


def _opts(events: Path, out: Path, **kw: object) -> ImportOptions:
    return ImportOptions(events=events, out=out, columns=column_map(MAP), actions=action_map(ACTIONS), **kw)  # type: ignore[arg-type]


def test_import_maps_names_and_counts_every_row_read_kept_and_skipped(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    res = CliRunner().invoke(
        _app(),
        ["data", "import", str(src), "--out", str(tmp_path / "ds"), "--map", MAP, "--actions", ACTIONS],
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert "read 11 rows" in out and "unix milliseconds" in out
    assert "kept 6, skipped 5" in out
    for reason in ("duplicate", "mapped to skip", "missing user_id", "bad ts", "wrong field count"):
        assert reason in out
    assert "users 4, items 4" in out
    assert "train 4 events, test 2 events" in out

    world = load_world(tmp_path / "ds")
    assert world.has_split and world.absent == ("kols", "posts", "follows", "friends")
    assert world.events.num_rows == 6
    assert world.events.column("action").to_pylist() == ["buy", "click", "click", "cart", "buy", "save"]
    assert sorted(world.users.column("user_id").to_pylist()) == [1, 2, 3, 5]
    assert set(world.items.column("category").to_pylist()) == {"unknown"}
    meta = json.loads((tmp_path / "ds" / "world.json").read_text())
    assert meta["defaults"]["item"]["category"] == "unknown"
    assert meta["import"]["rows_read"] == 11 and meta["import"]["rows_skipped"] == 5


def test_unmapped_event_names_are_an_error_listing_each_name_with_its_count(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    with pytest.raises(ShopImportError) as err:
        import_shop(
            ImportOptions(events=src, out=tmp_path / "ds", columns=column_map(MAP), actions={"view": "click"})
        )
    text = str(err.value)
    for name, count in (("purchase", 2), ("add_to_cart", 1), ("page_view", 1), ("favorite", 1)):
        assert f"'{name}' ({count} rows)" in text
    assert "'view'" not in text
    assert not (tmp_path / "ds").exists()


def test_bad_options_name_the_option_and_the_key() -> None:
    with pytest.raises(ShopImportError, match="--map: unknown field 'customer'"):
        column_map("customer=customer_id")
    with pytest.raises(ShopImportError, match="unknown action 'purchase'"):
        action_map("buy=purchase")
    with pytest.raises(ShopImportError, match="is not name=value"):
        action_map("purchase")


def test_missing_columns_are_named_with_the_columns_the_file_has(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    with pytest.raises(ShopImportError, match=r"no column.*'user_id'.*the file has: customer_id"):
        import_shop(ImportOptions(events=src, out=tmp_path / "ds"))


@pytest.mark.parametrize(
    ("stamps", "detected"),
    [
        (["1704067200", "1704070800", "1704074400"], "unix seconds"),
        (["1704067200000", "1704070800000", "1704074400000"], "unix milliseconds"),
        (["2024-01-01T00:00:00Z", "2024-01-01 01:00:00", "2024-01-01T03:00:00+01:00"], "ISO-8601"),
    ],
)
def test_timestamp_units_are_detected_and_reported(tmp_path: Path, stamps: list[str], detected: str) -> None:
    src = tmp_path / "events.csv"
    rows = [f"u{i},i{i},buy,{s}" for i, s in enumerate(stamps)]
    src.write_text("user_id,item_id,action,ts\n" + "\n".join(rows) + "\n")
    report = import_shop(ImportOptions(events=src, out=tmp_path / "ds", test_fraction=0.34))
    assert report.timestamp_format == detected
    ts = pq.read_table(tmp_path / "ds" / "events.parquet").column("ts").to_pylist()
    assert ts == [1704067200, 1704070800, 1704074400]


def test_gzip_csv_and_parquet_import_the_same_events(tmp_path: Path) -> None:
    plain = tmp_path / "events.csv"
    plain.write_text(SHOP_CSV)
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(gzip.compress(SHOP_CSV.encode()))
    good = "\n".join(line for line in SHOP_CSV.splitlines() if line.count(",") == 4)
    (tmp_path / "good.csv").write_text(good + "\n")
    import pyarrow.csv as pcsv

    parquet = tmp_path / "events.parquet"
    pq.write_table(pcsv.read_csv(tmp_path / "good.csv"), parquet)  # ids and ms as integers here
    tables = []
    for i, path in enumerate((plain, gz, parquet)):
        import_shop(_opts(path, tmp_path / f"ds{i}"))
        tables.append(
            pq.read_table(tmp_path / f"ds{i}" / "events.parquet").select(["ts", "user_id", "item_id"])
        )
    assert tables[0].equals(tables[1])
    assert tables[0].equals(tables[2])


def test_split_at_and_test_fraction_cut_chronologically(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    lines = ["user_id,item_id,action,ts"] + [
        f"u{i % 3},i{i},click,{1704067200 + 3600 * i}" for i in range(10)
    ]
    src.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # newest first: order must not matter
    report = import_shop(ImportOptions(events=src, out=tmp_path / "a", split_at="2024-01-01T07:00:00Z"))
    assert report.split["n_train"] == 7 and report.split["n_test"] == 3
    train = pq.read_table(tmp_path / "a" / "split" / "train.parquet").column("ts").to_pylist()
    assert train == sorted(train) and max(train) < 1704067200 + 7 * 3600
    report = import_shop(ImportOptions(events=src, out=tmp_path / "b", test_fraction=0.2))
    assert (report.split["n_train"], report.split["n_test"]) == (8, 2)
    with pytest.raises(ShopImportError, match="leaves the test part empty"):
        import_shop(ImportOptions(events=src, out=tmp_path / "c", split_at="2030-01-01"))


def test_catalogue_gaps_get_recorded_defaults_and_unknown_items_are_added(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("sku,category,price\n10,beauty,12.5\n11,,3\n99,home,1\n")
    report = import_shop(_opts(src, tmp_path / "ds", items=catalogue))
    items = pq.read_table(tmp_path / "ds" / "items.parquet").to_pylist()
    by_id = {row["item_id"]: row for row in items}
    assert set(by_id) == {"10", "11", "12", "14", "99"}  # 13 is only in skipped rows
    assert by_id["10"]["category"] == "beauty" and by_id["10"]["price"] == 12.5
    assert by_id["11"]["category"] == "unknown" and by_id["11"]["in_stock"] is True
    assert by_id["12"]["brand"] == "unknown" and by_id["12"]["price"] == 0.0
    assert any("no catalogue row" in what and n == 2 for what, n in report.defaults.items())
    assert report.defaults["items.category empty → 'unknown'"] == 1


def test_a_failed_import_leaves_an_existing_output_untouched(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    out = tmp_path / "ds"
    import_shop(_opts(src, out))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ShopImportError, match="exists and is not empty"):
        import_shop(_opts(src, out))
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,sku,event_type,timestamp\n1,2,teleport,1704067200\n")
    with pytest.raises(ShopImportError, match="teleport"):
        import_shop(ImportOptions(events=bad, out=out, columns=column_map(MAP), overwrite=True))
    assert sorted(p.name for p in out.rglob("*")) == before
    assert not list(tmp_path.glob(".ds.tmp-*"))


def test_social_tables_are_optional_and_their_references_are_completed(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(SHOP_CSV)
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,kol_id,item_id,created_at\n100,7,10,2024-01-01\n101,8,15,2024-01-01\n")
    follows = tmp_path / "follows.parquet"
    pq.write_table(pa.table({"user_id": ["1", "77"], "kol_id": ["7", "7"]}), follows)
    report = import_shop(_opts(src, tmp_path / "ds", posts=posts, follows=follows))
    world = load_world(tmp_path / "ds")
    assert world.absent == ("friends",)
    assert sorted(world.kols.column("kol_id").to_pylist()) == [7, 8]
    assert 15 in world.items.column("item_id").to_pylist()
    assert 77 in world.users.column("user_id").to_pylist()
    assert world.follows.column("ts").to_pylist() == [1704067200, 1704067200]
    assert any("creators referenced" in what for what in report.defaults)
    from recsys.io.references import check_references

    assert check_references(world) == []


def test_event_post_ids_without_a_post_row_are_emptied_and_counted(tmp_path: Path) -> None:
    from recsys.io.references import check_references

    src = tmp_path / "events.csv"
    src.write_text(
        "user_id,item_id,action,ts,post_id,kol_id\nu1,i1,click,1704067200,p1,k1\nu2,i1,buy,1704070800,p9,k1\n"
    )
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,kol_id,item_id\np1,k1,i1\n")
    report = import_shop(ImportOptions(events=src, out=tmp_path / "ds", posts=posts, test_fraction=0.5))
    assert report.defaults["events whose post_id is not in posts: post_id emptied"] == 1
    world = load_world(tmp_path / "ds")
    assert check_references(world) == []
    assert world.events.column("post_id").null_count == 1


def test_a_file_without_a_header_line_is_named_with_columns_and_the_error_says_so(tmp_path: Path) -> None:
    src = tmp_path / "UserBehavior.csv"  # the shape of a public log: no header, integer ids, pv/cart/fav/buy
    src.write_text(
        "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n2,2576651,149192,fav,1511572885\n"
    )
    with pytest.raises(ShopImportError, match="no header line, name its columns with --columns"):
        import_shop(ImportOptions(events=src, out=tmp_path / "x"))
    res = CliRunner().invoke(
        _app(),
        [
            "data", "import", str(src), "--out", str(tmp_path / "ds"),
            "--columns", "user_id,item_id,category_id,behavior,ts",
            "--map", "action=behavior,category=category_id", "--actions", "pv=click,fav=save,buy=buy",
            "--test-fraction", "0.34",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "read 3 rows" in res.output and "unix seconds" in res.output
    world = load_world(tmp_path / "ds")
    assert world.events.num_rows == 3
    categories = dict(
        zip(
            world.items.column("item_id").to_pylist(), world.items.column("category").to_pylist(), strict=True
        )
    )
    assert categories == {2268318: "2520377", 2333346: "2520771", 2576651: "149192"}  # from the events
    assert "category from their events" in res.output


def test_tab_separated_exports_are_read_with_delimiter_tab(tmp_path: Path) -> None:
    src = tmp_path / "events.tsv.csv"
    src.write_text("user_id\titem_id\taction\tts\nu1\ti1\tbuy\t1704067200\nu2\ti2\tclick\t1704070800\n")
    res = CliRunner().invoke(
        _app(), ["data", "import", str(src), "--out", str(tmp_path / "ds"), "--delimiter", "tab"]
    )
    assert res.exit_code == 0, res.output
    assert "kept 2, skipped 0" in res.output


def test_when_no_row_is_usable_the_error_says_why(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text("user_id,item_id,action,ts\nu1,i1,buy,1111\nu2,i2,buy,1112\n")  # month-day, not a time
    with pytest.raises(ShopImportError, match=r"0 usable event\(s\) of 2 rows read.*2 bad ts.*unix seconds"):
        import_shop(ImportOptions(events=src, out=tmp_path / "ds"))


def test_parquet_date_time_columns_keep_their_own_unit(tmp_path: Path) -> None:
    from datetime import datetime

    stamps = [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (0, 1, 2)]
    src = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "b", "c"],
                "item_id": [1, 2, 3],
                "action": ["buy", "cart", "click"],
                "ts": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
            }
        ),
        src,
    )
    report = import_shop(ImportOptions(events=src, out=tmp_path / "ds", test_fraction=0.34))
    assert report.timestamp_format == "a date/time column"
    assert pq.read_table(tmp_path / "ds" / "events.parquet").column("ts").to_pylist() == [
        1704067200,
        1704070800,
        1704074400,
    ]


@pytest.mark.parametrize(("n_ids", "span"), [(50, 100), (30_000, 3_000_000_000)])
def test_repeats_are_removed_and_time_order_restored_however_the_sort_key_is_built(
    n_ids: int, span: int
) -> None:
    import numpy as np

    from recsys.io.shop_import import _dedup_sort

    rng = np.random.default_rng(n_ids)
    n = 40_000
    ts = 700_000_000 + rng.integers(0, span, n)
    users, items = rng.integers(0, n_ids, n), rng.integers(0, n_ids, n)
    actions = rng.integers(0, 8, n).astype(np.int8)
    repeat = rng.integers(0, n, 500)  # exact repeats of 500 rows
    ts, users, items, actions = (np.concatenate([a, a[repeat]]) for a in (ts, users, items, actions))
    table = pa.table(
        {
            "ts": ts,
            "user_id": pa.array(users).cast(pa.string()),
            "item_id": pa.array(items).cast(pa.string()),
            "action": actions,
        }
    )
    out, removed = _dedup_sort(table)
    rows = list(
        zip(*(out.column(c).to_pylist() for c in ("ts", "user_id", "item_id", "action")), strict=True)
    )
    expected = set(zip(ts.tolist(), map(str, users), map(str, items), actions.tolist(), strict=True))
    assert len(rows) == len(set(rows)) == len(expected) and set(rows) == expected
    assert removed == len(ts) - len(expected)
    assert out.column("ts").to_pylist() == sorted(out.column("ts").to_pylist())

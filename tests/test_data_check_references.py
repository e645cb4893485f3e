"""`kolfeed data check DIR` checks every reference between a world's tables and names the file, the
row, the column and the missing id."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from recsys.io.references import check_references
from recsys.io.world import load_world
from tests.service_harness import cli_app


def _cli() -> typer.Typer:
    from kolfeed import commands_data

    return cli_app(commands_data)


def _world(root: Path, events: str, posts: str | None = None) -> Path:
    root.mkdir()
    (root / "users.csv").write_text("user_id,created_at,segment\nalice,0,a\nbob,0,b\n")
    (root / "items.csv").write_text(
        "item_id,category,brand,price,merchant_id,in_stock\nSKU-1,home,x,1.0,m1,true\nSKU-2,home,x,2.0,m1,true\n"
    )
    (root / "events.csv").write_text("ts,user_id,item_id,action,kol_id\n" + events)
    if posts is not None:
        (root / "kols.csv").write_text("kol_id,verticals\nkol-a,home\n")
        (root / "posts.csv").write_text("post_id,kol_id,item_id,created_at\n" + posts)
    return root


def test_a_consistent_world_passes(tmp_path: Path) -> None:
    root = _world(tmp_path / "w", "1,alice,SKU-1,click,\n2,bob,SKU-2,buy,\n", posts="p1,kol-a,SKU-1,0\n")
    assert check_references(load_world(root)) == []
    res = CliRunner().invoke(_cli(), ["data", "check", str(root)])
    assert res.exit_code == 0, res.output
    assert "every reference resolves" in res.output


def test_events_naming_unknown_users_or_absent_creators_are_reported_with_file_row_and_column(
    tmp_path: Path,
) -> None:
    events = "1,alice,SKU-1,click,\n2,carol,SKU-1,click,\n3,carol,SKU-2,buy,\n4,bob,SKU-2,click,kol-z\n"
    root = _world(tmp_path / "w", events)
    problems = [str(p) for p in check_references(load_world(root))]
    assert problems == [
        f"{root / 'events.csv'}, row 3, column 'user_id': 'carol' is not in users.user_id (2 rows in all)",
        f"{root / 'events.csv'}, row 5, column 'kol_id': 'kol-z' is not in kols.kol_id (the table is absent)",
    ]
    res = CliRunner().invoke(_cli(), ["data", "check", str(root)])
    assert res.exit_code == 1
    assert "2 dangling reference(s)" in res.output


def test_posts_must_name_known_creators_and_items(tmp_path: Path) -> None:
    root = _world(tmp_path / "w", "1,alice,SKU-1,click,\n", posts="p1,kol-a,SKU-1,0\np2,kol-b,SKU-9,0\n")
    problems = [str(p) for p in check_references(load_world(root))]
    assert problems == [
        f"{root / 'posts.csv'}, row 3, column 'kol_id': 'kol-b' is not in kols.kol_id",
        f"{root / 'posts.csv'}, row 3, column 'item_id': 'SKU-9' is not in items.item_id",
    ]

"""KOL attribution: every buy credited once (totals equal the log), share cascades credit the original KOL."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.attribution import AttributionError, kol_attribution, share_paths
from recsys.event_columns import EventColumns
from tests.attribution_fixtures import T0, A, events_table


def test_totals_equal_log_gmv_and_each_buy_is_credited_once() -> None:
    rep = kol_attribution(events_table())
    assert rep.log_gmv == pytest.approx(67.0) and rep.log_buys == 5
    assert rep.attributed_gmv == pytest.approx(67.0) and rep.balanced
    assert sum(k.buys for k in rep.kols) + rep.unattributed.buys == rep.log_buys
    assert rep.unattributed.gmv == pytest.approx(12.0)
    assert rep.unattributed.by_reason == {"no_kol": 12.0, "beyond_depth": 0.0}
    assert rep.buys_unknown_path == 1
    assert [k.kol_id for k in rep.kols] == ["7", "8"]  # sorted by GMV; ids as the shop spells them
    assert (rep.kol(7).buys, rep.kol(8).buys, rep.kol(8).gmv) == (2, 2, 5.0)


def test_share_cascade_buy_is_credited_to_the_original_kol_at_depth_two() -> None:
    depth, parent, kol = share_paths(EventColumns.from_table(events_table()))
    assert depth.tolist()[:8] == [0, 0, 0, 0, 1, 1, 2, 2]
    assert parent[7] == 5 and parent[4] == 3
    assert kol[7] == 7

    k7 = kol_attribution(events_table()).kol(7)
    assert (k7.impressions, k7.clicks, k7.shares, k7.buys) == (3, 1, 2, 2)
    assert k7.gmv == pytest.approx(50.0)
    assert (k7.direct_buys, k7.direct_gmv) == (1, 20.0)
    assert (k7.share_buys, k7.share_gmv) == (1, 30.0)
    assert k7.gmv_by_depth == {0: 20.0, 2: 30.0}
    assert k7.impressions_via_share == 2
    assert k7.click_rate == pytest.approx(1 / 3)
    assert k7.share_per_click == pytest.approx(2.0)


def test_buys_beyond_the_depth_limit_go_to_unattributed() -> None:
    rep = kol_attribution(events_table(), depth_limit=1)
    assert rep.kol(7).gmv == pytest.approx(20.0)
    assert rep.unattributed.by_reason == {"no_kol": 12.0, "beyond_depth": 30.0}
    assert rep.unattributed.buys_by_reason["beyond_depth"] == 1
    assert rep.attributed_gmv == pytest.approx(rep.log_gmv) and rep.balanced


def test_followers_vertical_fit_commission_and_roi() -> None:
    follows = {"user_id": [1, 2, 3], "kol_id": [7, 7, 8], "ts": [T0 + 5, T0 - 100, T0 + 6]}
    items = {"item_id": [10, 11, 12], "category": ["beauty", "food", "home"]}
    kols = {"kol_id": [7, 8], "verticals": ["beauty|home", "music"]}
    rep = kol_attribution(
        events_table(),
        items=items,
        kols=kols,
        follows=follows,
        commission_rate=0.1,
        costs={7: 2.5},
        start_ts=T0,
    )
    k7, k8 = rep.kol(7), rep.kol(8)
    assert (k7.followers_gained, k8.followers_gained) == (1, 1)
    assert (k7.followers_total, k8.followers_total) == (2, 1)
    # no window: "gained" means within the log's own time span, so the old follow still does not count
    assert kol_attribution(events_table(), follows=follows).kol(7).followers_gained == 1
    assert k7.vertical_fit == pytest.approx(1.0) and k8.vertical_fit == pytest.approx(0.0)
    assert k7.verticals == ["beauty", "home"]
    assert k7.commission == pytest.approx(5.0) and k7.roi == pytest.approx(2.0)
    assert k8.commission == pytest.approx(0.5) and k8.roi is None
    assert kol_attribution(events_table()).kol(7).followers_gained is None
    with pytest.raises(KeyError):
        rep.kol(999)


def test_window_keeps_share_numbers_valid() -> None:
    # Window starts at C's impression: the cascade is resolved on the full log, so C's buy keeps depth 2.
    rep = kol_attribution(events_table(), start_ts=T0 + 6, stop_ts=T0 + 9)
    assert rep.log_buys == 1 and rep.log_gmv == pytest.approx(30.0)
    assert rep.kol(7).gmv_by_depth == {2: 30.0}


def test_dangling_share_reference_is_an_unknown_path() -> None:
    rows = [(A, 10, "buy", 100, 7, None, "s5", 9.0)]
    rep = kol_attribution(events_table(rows))
    assert rep.buys_unknown_path == 1 and rep.kol(7).direct_gmv == pytest.approx(9.0)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(AttributionError, match="depth_limit"):
        kol_attribution(events_table(), depth_limit=-1)
    with pytest.raises(AttributionError, match="commission rate"):
        kol_attribution(events_table(), commission_rate=1.5)
    with pytest.raises(AttributionError, match="follows table lacks column 'ts'"):
        kol_attribution(events_table(), follows={"kol_id": [1]})


def test_generated_world_balances_and_matches_the_generator_cascades(tmp_path: Path) -> None:
    from recsys.world.cascades import cascade_depths
    from recsys.world.config import scale_config
    from recsys.world.generate import generate_world

    generate_world(scale_config("tiny", {"n_users": 400, "days": 7}), 3, tmp_path, progress=False)
    events = pq.read_table(tmp_path / "events.parquet")
    depth, _, _ = share_paths(EventColumns.from_table(events))
    assert np.array_equal(depth, cascade_depths(events))
    rep = kol_attribution(
        events, items=pq.read_table(tmp_path / "items.parquet"), kols=pq.read_table(tmp_path / "kols.parquet")
    )
    buys = np.asarray(events.filter(pa.compute.equal(events["action"], "buy"))["value"].fill_null(0.0))
    assert rep.log_buys == len(buys)
    assert math.isclose(rep.attributed_gmv, math.fsum(buys.tolist()), rel_tol=1e-12)
    assert rep.balanced
    assert sum(k.buys for k in rep.kols) + rep.unattributed.buys == len(buys)
    assert sum(k.share_gmv for k in rep.kols) > 0  # the world does produce share-driven sales

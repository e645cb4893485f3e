"""Graphs and affinity on a hand-made event table with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from recsys import graphs as g
from recsys.affinity import AffinityWeights, affinity_top_n, friend_buys_via_kol, kol_embeddings
from recsys.event_columns import EventColumns
from recsys.schema import DEFAULT_ACTION_WEIGHTS

DAY = 86_400
USERS = np.array([1, 2, 3], dtype=np.int64)
ITEMS = np.array([10, 20, 30], dtype=np.int64)
KOLS = np.array([100, 200], dtype=np.int64)

# ts, user, item, action, post, kol, to_user
ROWS = [
    (0, 1, 10, "click", 1000, 100, None),
    (0, 1, 10, "buy", 1000, 100, None),
    (DAY, 1, 20, "share", 2000, 200, 2),
    (DAY, 2, 20, "click", 2000, 200, None),
    (DAY, 2, 20, "hide", 2000, 200, None),
    (DAY, 3, 30, "impression", 1001, 100, None),
    (DAY, 3, 30, "like", 1001, 100, None),
]


def _events(rows: list[tuple[object, ...]] = ROWS) -> EventColumns:
    cols = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "ts": pa.array(cols[0], pa.int64()),
            "user_id": pa.array(cols[1], pa.int64()),
            "item_id": pa.array(cols[2], pa.int64()),
            "action": pa.array(cols[3], pa.string()),
            "post_id": pa.array(cols[4], pa.int64()),
            "kol_id": pa.array(cols[5], pa.int64()),
            "to_user_id": pa.array(cols[6], pa.int64()),
        }
    )
    return g.events_from_table(table)


W = dict(DEFAULT_ACTION_WEIGHTS)


def test_confidence_sums_weights_and_drops_hidden() -> None:
    m = g.confidence_matrix(_events(), USERS, ITEMS, W).toarray()
    expected = np.array(
        [
            [1.0 + 6.0, 4.0, 0.0],  # click+buy, share
            [0.0, 0.0, 0.0],  # click 1 + hide -4 = -3 -> dropped
            [0.0, 0.0, 1.5],  # impression weighs 0, like 1.5
        ]
    )
    np.testing.assert_allclose(m, expected)
    assert m.dtype == np.float32


def test_confidence_behaviour_subset_and_decay() -> None:
    clicks = g.confidence_matrix(_events(), USERS, ITEMS, W, behaviours=["click"]).toarray()
    np.testing.assert_allclose(clicks, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    decayed = g.confidence_matrix(_events(), USERS, ITEMS, W, half_life_days=1.0).toarray()
    # The newest event is at DAY: events at 0 are one half-life old.
    np.testing.assert_allclose(decayed[0], [7.0 * 0.5, 4.0, 0.0])
    np.testing.assert_allclose(decayed[2], [0.0, 0.0, 1.5])


def test_behaviour_graphs_and_positive_matrix() -> None:
    graphs = g.behaviour_graphs(_events(), USERS, ITEMS)
    assert set(graphs) == {"click", "share", "buy"}
    np.testing.assert_array_equal(graphs["click"].toarray(), [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(graphs["share"].toarray(), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(graphs["buy"].toarray(), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    pos = g.positive_matrix(_events(), USERS, ITEMS).toarray()
    np.testing.assert_array_equal(pos, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_share_graph_edges() -> None:
    rows = [*ROWS, (DAY, 1, 30, "share", 1001, 100, 2), (DAY, 3, 30, "share", 1001, 100, 1)]
    share = g.share_graph(_events(rows), USERS).toarray()
    np.testing.assert_array_equal(share, [[0, 2, 0], [0, 0, 0], [1, 0, 0]])


def test_user_kol_engagement_is_signed_and_decays() -> None:
    eng = g.user_kol_engagement(_events(), USERS, KOLS, W, half_life_days=None).toarray()
    np.testing.assert_allclose(eng, [[7.0, 4.0], [0.0, -3.0], [1.5, 0.0]])
    eng_d = g.user_kol_engagement(_events(), USERS, KOLS, W, half_life_days=1.0).toarray()
    np.testing.assert_allclose(eng_d[0], [3.5, 4.0])


def test_kol_category_fit_known_values() -> None:
    cats = np.array(["beauty", "food", "beauty"])  # categories of items 10, 20, 30
    raw = g.kol_category_fit(_events(), KOLS, ITEMS, cats, ["beauty", "food"], W, smoothing=0.0)
    # kol 100: click 1 + buy 6 + like 1.5 all on beauty; kol 200: share 4 + click 1 on food (hide ignored)
    np.testing.assert_allclose(raw, [[1.0, 0.0], [0.0, 1.0]])
    smooth = g.kol_category_fit(_events(), KOLS, ITEMS, cats, ["beauty", "food"], W, smoothing=1.0)
    prior = np.array([8.5, 5.0]) / 13.5
    np.testing.assert_allclose(smooth[0], (np.array([8.5, 0.0]) + prior) / 9.5, rtol=1e-6)
    np.testing.assert_allclose(smooth[1], (np.array([0.0, 5.0]) + prior) / 6.0, rtol=1e-6)
    np.testing.assert_allclose(smooth.sum(axis=1), 1.0, rtol=1e-6)


def test_drop_seen_removes_training_pairs() -> None:
    test = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=np.float32))
    seen = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=np.float32))
    np.testing.assert_array_equal(g.drop_seen(test, seen).toarray(), [[0, 0, 1], [0, 1, 0], [0, 0, 0]])


def test_unknown_ids_and_actions_are_named() -> None:
    with pytest.raises(g.GraphError, match="user_id 9"):
        g.confidence_matrix(_events([(0, 9, 10, "click", None, None, None)]), USERS, ITEMS, W)
    with pytest.raises(g.GraphError, match="'purchase'"):
        _events([(0, 1, 10, "purchase", None, None, None)])


# ------------------------------------------------------------------ affinity


def test_kol_embeddings_weighted_mean() -> None:
    item_emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    # kol 0 posts items 0 (engagement 1 -> weight 2) and 1 (no engagement -> weight 1); kol 2 posts nothing
    emb = kol_embeddings(item_emb, np.array([0, 0, 1]), np.array([0, 1, 2]), 3, np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(emb, [[2 / 3, 1 / 3], [1.0, 1.0], [0.0, 0.0]], rtol=1e-6)


def test_followed_kol_ranks_above_unfollowed() -> None:
    n_users, n_kols = 2, 3
    follows = sp.csr_matrix(([1.0], ([0], [1])), shape=(n_users, n_kols))
    empty = sp.csr_matrix((n_users, n_kols), dtype=np.float32)
    user_emb = np.ones((n_users, 2), dtype=np.float32)
    kol_emb = np.ones((n_kols, 2), dtype=np.float32)  # identical similarity everywhere
    aff = affinity_top_n(follows, empty, empty, user_emb, kol_emb, top_n=2).toarray()
    assert aff[0, 1] > aff[0, 0] and aff[0, 1] > aff[0, 2]
    assert (aff[0] > 0).sum() == 2 and (aff[1] > 0).sum() == 2  # top-2 per user
    np.testing.assert_allclose(aff[0, 1], 2.0 + 0.5, rtol=1e-6)


def test_hidden_kol_is_demoted_and_friends_purchases_count() -> None:
    n_users, n_kols = 2, 2
    none = sp.csr_matrix((n_users, n_kols), dtype=np.float32)
    engagement = sp.csr_matrix(([-8.0], ([0], [0])), shape=(n_users, n_kols))
    friends = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 0])), shape=(2, 2))
    buys = sp.csr_matrix(([3.0], ([1], [1])), shape=(n_users, n_kols))  # user 1 bought 3x via kol 1
    fb = friend_buys_via_kol(friends, buys)
    np.testing.assert_array_equal(fb.toarray(), [[0, 3], [0, 0]])
    w = AffinityWeights(follow=2.0, engagement=1.0, friends_bought=0.5, similarity=0.0)
    aff = affinity_top_n(none, engagement, fb, None, None, w, top_n=5).toarray()
    assert aff[0, 0] == 0.0  # negative affinity is not kept
    np.testing.assert_allclose(aff[0, 1], 0.5 * np.log1p(3.0), rtol=1e-6)
    assert aff[1].sum() == 0.0

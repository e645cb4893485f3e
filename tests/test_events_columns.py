"""The one conversion of event columns to numpy that graphs and reports share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys.event_columns import EventTableError, action_codes, id_column
from recsys.schema import ACTION_CODE, NO_ID


def test_ids_fill_nulls_and_reject_text() -> None:
    assert id_column(pa.array([3, None, 5], pa.int64()), "kol_id").tolist() == [3, NO_ID, 5]
    assert id_column(np.array([1, None], dtype=object), "post_id").tolist() == [1, NO_ID]
    with pytest.raises(EventTableError, match="'user_id': not integer ids"):
        id_column(np.array(["x"]), "user_id")


def test_action_names_and_codes() -> None:
    names = pa.array(["buy", "impression", "hide", "buy"])
    assert action_codes(names).tolist() == [ACTION_CODE[n] for n in ("buy", "impression", "hide", "buy")]
    assert action_codes(np.array([0, 6])).tolist() == [0, 6]
    with pytest.raises(EventTableError, match="unknown action 'purchase' at row 2"):
        action_codes(np.array(["click", "buy", "purchase"]))
    with pytest.raises(EventTableError, match="code 99 out of range"):
        action_codes(np.array([1, 99]))

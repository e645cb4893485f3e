"""External ids and their int64 keys: integers keep their value, strings hash below -1, stably."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from recsys.ids import MAX_ID_LENGTH, IdError, check_collisions, check_id, id_key, id_keys, id_labels
from recsys.schema import NO_ID


def test_a_json_number_and_its_decimal_string_are_the_same_key() -> None:
    assert id_key(42) == id_key("42") == 42
    assert id_key(0) == 0


def test_strings_hash_to_stable_negative_keys_that_never_meet_no_id() -> None:
    keys = [
        id_key(s)
        for s in ("alice", "sku-00017", "007", "-5", "9" * 25, "3f2b8c1e-1d7a-4b0e-9a55-0c2d9e1f4a7b")
    ]
    assert all(k <= -2 for k in keys)
    assert NO_ID not in keys
    assert len(set(keys)) == len(keys)
    digest = hashlib.blake2b(b"alice", digest_size=8).digest()
    assert id_key("alice") == -2 - (int.from_bytes(digest, "big") >> 2)


def test_non_canonical_decimals_are_distinct_ids() -> None:
    assert id_key("007") != id_key("7")
    assert id_key(-5) == id_key("-5") < -1


@pytest.mark.parametrize("bad", ["", "x" * (MAX_ID_LENGTH + 1), "tab\there", "new\nline", True, 1.5, None])
def test_bad_ids_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(IdError, match="user_id"):
        id_key(bad, "user_id")


def test_vectorised_keys_match_one_at_a_time() -> None:
    strs = pa.array(["alice", "42", "bob", "alice", "007"])
    assert id_keys(strs).tolist() == [id_key(s) for s in strs.to_pylist()]
    ints = pa.array([3, 0, -4], pa.int64())
    assert id_keys(ints).tolist() == [3, 0, id_key("-4")]
    with pytest.raises(IdError, match="item_id: missing"):
        id_keys(pa.array(["a", None]), "item_id")


def test_labels_round_trip_without_pickle(tmp_path) -> None:
    labels = id_labels(pa.array(["ü-sku", "42", "x"]))
    np.save(tmp_path / "l.npy", labels)
    assert np.load(tmp_path / "l.npy", allow_pickle=False).tolist() == ["ü-sku", "42", "x"]
    assert check_id(np.int64(7)) == "7"


def test_a_key_shared_by_two_labels_is_refused() -> None:
    check_collisions(np.array([1, 1, 2]), np.array(["1", "1", "2"]))
    with pytest.raises(IdError, match="same key"):
        check_collisions(np.array([5, 5]), np.array(["a", "b"]))


def test_run_dir_labels_keep_only_hashed_ids_and_round_trip(tmp_path) -> None:
    from recsys.artifacts import load_labels, save_labels
    from recsys.ids import key_label

    items = np.array(["sku-1", "42", "ü"], dtype=np.str_)
    keys = id_keys(pa.array(items.tolist()))
    save_labels(tmp_path / "labels.parquet", {"item": (keys, items)})
    got = load_labels(tmp_path / "labels.parquet")
    assert len(got["item"]) == 2 and got["kol"] == {}
    assert [key_label(int(k), got["item"]) for k in keys] == ["sku-1", "42", "ü"]
    assert load_labels(tmp_path / "missing.parquet")["post"] == {}


def test_bulk_text_keys_agree_with_the_one_value_rule() -> None:
    from recsys.ids import text_keys

    values = [
        "0",
        "42",
        "007",
        "-5",
        "9223372036854775807",  # int64 max: its own key
        "9223372036854775808",  # one more: hashed
        "9999999999999999999",
        "sku-1",
        " padded ",
        "ü-sku",
        "emoji-🛒",
        "",
        "x" * MAX_ID_LENGTH,
        "x" * (MAX_ID_LENGTH + 1),
        "ü" * (MAX_ID_LENGTH + 1),
        "tab\there",
        "bell\x07",
        "nbsp\u00a0",
        "3f2b8c1e-1d7a-4b0e-9a55-0c2d9e1f4a7b",
    ]
    keys, bad = text_keys(pa.array(values, pa.string()))
    for value, key, is_bad in zip(values, keys.tolist(), bad.tolist(), strict=True):
        try:
            expected = id_key(value)
        except IdError:
            assert is_bad, value
        else:
            assert not is_bad and key == expected, value

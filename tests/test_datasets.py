"""Known answers for the benchmark dataset loaders (hand-made files; the shared sets when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.datasets import load_dataset
from recsys.datasets.lightgcn import load_lightgcn
from recsys.datasets.movielens import load_movielens
from recsys.datasets.recbole import load_recbole
from recsys.ids import id_key
from recsys.io import DatasetError

GOWALLA = Path("/work/shared/data/gowalla")
ML100K = Path("/work/shared/data/ml-100k")


def pairs(matrix: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return {(int(u), int(i)) for u, i in zip(coo.row, coo.col, strict=True)}


def lightgcn_dir(tmp_path: Path, train: str, test: str) -> Path:
    root = tmp_path / "split"
    root.mkdir()
    (root / "train.txt").write_text(train)
    (root / "test.txt").write_text(test)
    return root


def test_lightgcn_known_answer(tmp_path: Path) -> None:
    # user 1 has no train items; a blank line and trailing spaces are fine; user 3 only in test
    root = lightgcn_dir(tmp_path, "0 0 1\n1\n\n2 1 4 4 \n", "0 2\n\n2 0\r\n3 1\n")
    data = load_lightgcn(root)
    assert (data.n_users, data.n_items) == (4, 5)
    assert pairs(data.train) == {(0, 0), (0, 1), (2, 1), (2, 4)}
    assert pairs(data.test) == {(0, 2), (2, 0), (3, 1)}
    assert data.train.dtype == np.float32 and set(data.train.data) == {1.0}
    assert data.user_ids.tolist() == [0, 1, 2, 3] and data.item_ids.tolist() == [0, 1, 2, 3, 4]


def test_lightgcn_malformed_line_is_named(tmp_path: Path) -> None:
    root = lightgcn_dir(tmp_path, "0 1 2\n1 3\n2 x4\n", "0 1\n")
    with pytest.raises(DatasetError, match=r"train\.txt, line 3: unexpected character 'x'"):
        load_lightgcn(root)
    (root / "train.txt").write_text("0 1\n1 -3\n")
    with pytest.raises(DatasetError, match=r"line 2"):
        load_lightgcn(root)
    (root / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"test\.txt: missing"):
        load_lightgcn(root)


@pytest.mark.skipif(not GOWALLA.is_dir(), reason="shared Gowalla split not present")
def test_gowalla_counts() -> None:
    data = load_dataset(GOWALLA, "lightgcn")
    assert (data.n_users, data.n_items) == (29_858, 40_981)
    assert (data.train.nnz, data.test.nnz) == (810_128, 217_242)


INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ta\t5\t50\n"
    "u1\tb\t3\t10\n"
    "u2\ta\t4\t7\n"
    "u1\tc\t4\t40\n"
    "u1\td\t1\t30\n"
    "u1\te\t2\t20\n"
    "u2\tb\t5\t9\n"
    "u2\tc\t2\t8\n"
    "u2\td\t5\t6\n"
)


def test_recbole_known_split(tmp_path: Path) -> None:
    path = tmp_path / "toy.inter"
    path.write_text(INTER)
    data = load_recbole(path)  # u1: 5 rows -> 1 test (latest: a@50); u2: 4 rows -> floor(0.8) = 0 test
    assert data.labels.labels_of("user", data.user_ids) == ["u1", "u2"]
    assert data.labels.labels_of("item", data.item_ids) == ["a", "b", "c", "d", "e"]
    assert data.user_ids.dtype == np.int64 and data.user_ids.tolist() == [id_key("u1"), id_key("u2")]
    assert pairs(data.test) == {(0, 0)}
    assert pairs(data.train) == {(0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3)}
    half = load_dataset(tmp_path, "recbole", {"test_ratio": 0.5})  # directory with one .inter
    assert pairs(half.test) == {(0, 0), (0, 2), (1, 1), (1, 2)}  # u1: a@50, c@40; u2: b@9, c@8
    liked = load_recbole(path, min_rating=4, test_ratio=0.5)  # keeps u1 a,c; u2 a,b,d
    assert liked.labels.labels_of("item", liked.item_ids) == ["a", "b", "c", "d"]
    assert pairs(liked.test) == {(0, 0), (1, 1)}
    assert pairs(liked.train) == {(0, 2), (1, 0), (1, 3)}


def test_movielens_shares_the_split(tmp_path: Path) -> None:
    lines = [line.split("\t") for line in INTER.splitlines()[1:]]
    numeric = {"u1": "1", "u2": "2"}
    (tmp_path / "u.data").write_text(
        "".join(f"{numeric[u]}\t{ord(i) - 96}\t{r}\t{t}\n" for u, i, r, t in lines)
    )
    data = load_movielens(tmp_path, test_ratio=0.5)
    assert data.user_ids.tolist() == [1, 2] and data.item_ids.tolist() == [1, 2, 3, 4, 5]
    assert pairs(data.test) == {(0, 0), (0, 2), (1, 1), (1, 2)}


def test_recbole_and_movielens_errors(tmp_path: Path) -> None:
    bad_header = tmp_path / "a.inter"
    bad_header.write_text("user_id:token\trating:float\nu\t1\n")
    with pytest.raises(DatasetError, match="no 'item_id' field"):
        load_recbole(bad_header)
    bad_ts = tmp_path / "b.inter"
    bad_ts.write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\tj\tsoon\n")
    with pytest.raises(DatasetError, match=r"b\.inter, line 3, column 'timestamp': 'soon'"):
        load_recbole(bad_ts)
    with pytest.raises(DatasetError, match=r"several \.inter files"):
        load_recbole(tmp_path)
    (tmp_path / "u.data").write_text("1\t1\t5\t10\n")
    with pytest.raises(DatasetError, match="test_ratio"):
        load_movielens(tmp_path / "u.data", test_ratio=1.5)
    with pytest.raises(DatasetError, match="no such file"):
        load_movielens(tmp_path / "nothing")


def test_dispatcher_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="known formats: lightgcn, movielens, recbole"):
        load_dataset(tmp_path, "world2")
    with pytest.raises(DatasetError, match="no option\\(s\\) 'ratio'"):
        load_dataset(tmp_path, "recbole", {"ratio": 0.1})


@pytest.mark.skipif(not ML100K.is_dir(), reason="shared ml-100k not present")
def test_ml100k_counts() -> None:
    data = load_dataset(ML100K, "recbole")
    assert (data.n_users, data.n_items) == (943, 1_682)
    assert data.train.nnz + data.test.nnz == 100_000
    assert data.test.nnz == 19_633  # sum over users of floor(0.2 * n_user)

"""FAISS index: approximate recall vs exact IndexFlatIP, save/load, run-directory build."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from recsys import artifacts as A
from recsys.index import (
    IndexBuildError,
    _mips_wrap,
    build_index,
    build_run_index,
    exact_recall,
    load_index,
    mips_items,
    mips_max_norm,
    save_index,
    search,
    search_ids,
    set_search_params,
)
from tests.ranking_fixtures import make_tiny_run


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    # clustered random vectors (like trained embeddings, unlike isotropic noise), fixed seed
    rng = np.random.default_rng(42)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    xb = centres[rng.integers(0, 40, 4000)] + 0.5 * rng.standard_normal((4000, 32)).astype(np.float32)
    xq = centres[rng.integers(0, 40, 100)] + 0.5 * rng.standard_normal((100, 32)).astype(np.float32)
    return xb.astype(np.float32), xq.astype(np.float32)


def test_flat_is_exact(data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = build_index(xb, "Flat")
    assert exact_recall(index, xb, xq, 100) == 1.0
    scores, ids = search(index, xq[:3], 5)
    expected = np.argsort(-(xq[:3] @ xb.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(xq[:3] @ xb.T, expected, axis=1), rtol=1e-5)


@pytest.mark.parametrize(
    ("factory", "params"),
    [
        ("HNSW32", {"ef_search": 256}),
        ("IVF64,Flat", {"nprobe": 16}),
        ("MIPS,IVF64,Flat", {"nprobe": 16}),
        ("MIPS,IVF64,SQfp16", {"nprobe": 16}),  # half the memory; needs the padded dimension for speed
    ],
)
def test_ann_recall_at_100(data: tuple[np.ndarray, np.ndarray], factory: str, params: dict[str, int]) -> None:
    xb, xq = data
    index = build_index(xb, factory, **params)
    recall = exact_recall(index, xb, xq, 100)
    assert recall >= 0.95, f"{factory} recall@100 = {recall:.3f}"


def test_ivf_recall_drops_with_one_probe(data: tuple[np.ndarray, np.ndarray]) -> None:
    # guards the test above: the recall measure can fail (one probed list misses most neighbours)
    xb, xq = data
    index = build_index(xb, "IVF64,Flat", nprobe=1)
    assert exact_recall(index, xb, xq, 100) < 0.9


def test_save_load_round_trip(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    for factory in ("Flat", "HNSW16"):
        index = build_index(xb, factory)
        path = tmp_path / f"{factory}.faiss"
        save_index(index, path)
        loaded = load_index(path)
        assert loaded.ntotal == len(xb)
        s1, i1 = search(index, xq, 10)
        s2, i2 = search(loaded, xq, 10)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2)
    assert isinstance(faiss.downcast_index(load_index(tmp_path / "HNSW16.faiss")), faiss.IndexHNSW)


def _uneven_norms(data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The clustered items with norms spread over 0.5x-2x (trained embeddings are not normalised)."""
    xb, _ = data
    return (xb * np.random.default_rng(3).uniform(0.5, 2.0, (len(xb), 1))).astype(np.float32)


def test_mips_flat_is_exact_with_inner_product_scores(data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = _uneven_norms(data), data[1]
    index = build_index(xb, "MIPS,Flat")
    assert index.ntotal == len(xb) and index.d == xb.shape[1]  # the augmentation is invisible outside
    assert mips_max_norm(index) == pytest.approx(float(np.linalg.norm(xb, axis=1).max()), rel=1e-5)
    assert mips_max_norm(build_index(xb, "Flat")) is None
    scores, ids = search(index, xq, 20)
    dots = xq @ xb.T
    top = -np.sort(-dots, axis=1)[:, :20]
    # exact up to float32 rounding of the L2 expansion (near-ties may swap): the found items' true
    # inner products are the true top 20, and the returned scores are those inner products
    np.testing.assert_allclose(np.take_along_axis(dots, ids, axis=1), top, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scores, np.take_along_axis(dots, ids, axis=1), rtol=1e-4, atol=1e-3)
    assert (ids == np.argsort(-dots, axis=1)[:, :20]).mean() > 0.99


def test_mips_ivf_saves_loads_and_keeps_its_recall(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = _uneven_norms(data), data[1]
    index = build_index(xb, "MIPS,IVF64,Flat", nprobe=16)
    recall = exact_recall(index, xb, xq, 100)
    assert recall >= 0.95, recall
    save_index(index, tmp_path / "mips.faiss")
    loaded = load_index(tmp_path / "mips.faiss", nprobe=16)
    assert loaded.d == xb.shape[1] and mips_max_norm(loaded) == pytest.approx(mips_max_norm(index))
    assert exact_recall(loaded, xb, xq, 100) == recall
    s1, i1 = search(index, xq, 10)
    s2, i2 = search(loaded, xq, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    set_search_params(loaded, nprobe=1)  # nprobe reaches the IVF index behind the transform
    assert exact_recall(loaded, xb, xq, 100) < 0.9


def test_mips_pads_to_a_multiple_of_8_and_reads_unpadded_files(data: tuple[np.ndarray, np.ndarray]) -> None:
    """d = 32 → the L2 index holds 40 columns (32 + 2, rounded up), and an index written before the
    padding (d + 2 = 34 columns) still gives its M and exact inner products."""
    xb, xq = _uneven_norms(data), data[1]
    index = build_index(xb, "MIPS,Flat")
    assert faiss.downcast_index(index).index.d == 40
    augmented, max_norm = mips_items(xb)
    old_inner = faiss.IndexFlatL2(34)
    old_inner.add(np.ascontiguousarray(augmented[:, :34]))  # the old layout: [x, sqrt(M² - |x|²), 0]
    old = _mips_wrap(old_inner, 32, max_norm)
    assert mips_max_norm(old) == pytest.approx(max_norm)
    np.testing.assert_array_equal(search(old, xq, 10)[1], search(index, xq, 10)[1])


def test_search_pads_missing_slots(data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = build_index(xb[:3], "Flat")
    scores, ids = search(index, xq[:2], 5)
    assert ids.shape == (2, 5)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


@pytest.mark.parametrize(
    ("factory", "reduced"),
    [
        ("IVF64,Flat", {"nprobe": 1}),  # 16 / 16
        ("MIPS,IVF64,Flat", {"nprobe": 1}),
        ("PCA16,IVF64,Flat", {"nprobe": 1}),
        ("HNSW16", {"ef_search": 20}),  # 64 / 16 = 4, raised to k = 20
        ("MIPS,HNSW16", {"ef_search": 20}),
    ],
)
def test_search_effort_scales_the_index_own_setting(
    data: tuple[np.ndarray, np.ndarray], factory: str, reduced: dict[str, int]
) -> None:
    """effort=1/16 answers exactly as the index set to 1/16 of its nprobe / efSearch would, and
    leaves the index's own setting alone (a later full-effort search is unchanged)."""
    xb, xq = data
    index = build_index(xb, factory, nprobe=16, ef_search=64)
    full = search(index, xq[:20], 20)
    cheap = search(index, xq[:20], 20, effort=1 / 16)
    assert (search(index, xq[:20], 20)[1] == full[1]).all()  # the full setting is untouched
    set_search_params(index, **reduced)
    expected = search(index, xq[:20], 20)
    np.testing.assert_array_equal(cheap[1], expected[1])
    np.testing.assert_allclose(cheap[0], expected[0], rtol=1e-6)
    assert not (cheap[1] == full[1]).all()  # these data do make the cheaper search differ


@pytest.mark.parametrize("factory", ["Flat", "MIPS,Flat", "MIPS,IVF64,SQfp16", "IVF64,Flat", "HNSW16"])
@pytest.mark.parametrize("effort", [1.0, 0.25])
def test_search_ids_are_the_ids_search_returns(
    data: tuple[np.ndarray, np.ndarray], factory: str, effort: float
) -> None:
    """The ranker's id-only search finds exactly the neighbours of ``search``, in the same order,
    one query (1-D, as the ranker passes it) or several, with -1 padding and k <= 0."""
    xb, xq = data
    index = build_index(xb, factory, nprobe=16, ef_search=64)
    for queries, k in ((xq[0], 50), (xq[:7], 20), (xq[:2], 0)):
        ids = search_ids(index, queries, k, effort=effort)
        assert ids.dtype == np.int64
        np.testing.assert_array_equal(ids, search(index, queries, k, effort=effort)[1])
    small = build_index(xb[:3], "Flat")
    np.testing.assert_array_equal(search_ids(small, xq[:2], 5), search(small, xq[:2], 5)[1])
    with pytest.raises(IndexBuildError, match="dimension"):
        search_ids(index, xq[:1, :5], 3)


def test_search_effort_follows_later_setting_changes(data: tuple[np.ndarray, np.ndarray]) -> None:
    """The per-index search plan is cached, but effort reads the nprobe in force at each call."""
    xb, xq = data
    index = build_index(xb, "MIPS,IVF64,Flat", nprobe=16)
    search(index, xq[:5], 10, effort=0.5)  # builds the plan at nprobe 16
    set_search_params(index, nprobe=32)
    cheap = search(index, xq[:5], 10, effort=0.5)
    set_search_params(index, nprobe=16)
    assert (cheap[1] == search(index, xq[:5], 10)[1]).all()


def test_search_effort_is_ignored_by_exact_indexes(data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    for factory in ("Flat", "MIPS,Flat"):
        index = build_index(xb, factory)
        assert (search(index, xq[:5], 10, effort=0.1)[1] == search(index, xq[:5], 10)[1]).all()
    with pytest.raises(IndexBuildError, match="effort"):
        search(build_index(xb), xq[:1], 3, effort=0.0)


def test_bad_inputs_name_the_problem(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, _ = data
    with pytest.raises(IndexBuildError, match="factory"):
        build_index(xb, "NotAnIndex")
    with pytest.raises(IndexBuildError, match="IVF lists"):
        build_index(xb[:10], "IVF64,Flat")
    with pytest.raises(IndexBuildError, match="metric"):
        build_index(xb, "Flat", metric="cosine")
    with pytest.raises(IndexBuildError, match="metric 'ip' only"):
        build_index(xb, "MIPS,Flat", metric="l2")
    with pytest.raises(IndexBuildError, match="factory"):
        build_index(xb, "MIPS,NotAnIndex")
    with pytest.raises(IndexBuildError, match="NaN"):
        build_index(np.full((3, 4), np.nan, dtype=np.float32))
    with pytest.raises(IndexBuildError, match="dimension"):
        search(build_index(xb), np.zeros((1, 5), np.float32), 3)
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"not an index")
    with pytest.raises(IndexBuildError, match=r"bad\.faiss"):
        load_index(bad)


def test_build_run_index_updates_manifest(tmp_path) -> None:
    run = make_tiny_run(tmp_path / "run", with_index=False)
    info = build_run_index(run, "HNSW16", recall_queries=6)
    assert info["factory"] == "HNSW16"
    assert (run / A.INDEX).is_file()
    manifest = A.verify_run_dir(run)  # re-checksummed: still valid
    assert A.INDEX in manifest.files and "index.json" in manifest.files
    assert json.loads((run / "index.json").read_text())["n_items"] == 40


def test_build_run_index_refuses_corrupt_run(tmp_path) -> None:
    run = make_tiny_run(tmp_path / "run", with_index=False)
    with open(run / A.ITEM_EMB, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(A.ArtifactError, match="checksum"):
        build_run_index(run)
    assert not (run / A.INDEX).exists()


def test_cli_index_build(tmp_path) -> None:
    from typer.testing import CliRunner

    from kolfeed.cli import _register, app

    _register()
    run = make_tiny_run(tmp_path / "run", with_index=False)
    result = CliRunner().invoke(app, ["index", "build", str(run), "--factory", "HNSW16"])
    assert result.exit_code == 0, result.output
    assert '"factory": "HNSW16"' in result.output
    # the user-neighbour table: 512 by default (the tiny run has fewer items: one row per user of all
    # of them), the width asked for, or none with 0
    from recsys import user_neighbours

    built = json.loads(result.output)["user_neighbours"]
    assert built["k"] == A.load_array(run / A.ITEM_EMB).shape[0] and (run / user_neighbours.TABLE).is_file()
    for k, want in (("4", 4), ("0", None)):
        out = CliRunner().invoke(app, ["index", "build", str(run), "--user-neighbours", k])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["user_neighbours"].get("k") == want
        assert (run / user_neighbours.TABLE).is_file() == (want is not None)
        assert A.verify_run_dir(run)  # the manifest lists exactly what is there
    negative = CliRunner().invoke(app, ["index", "build", str(run), "--user-neighbours", "-1"])
    assert negative.exit_code == 2
    bad = CliRunner().invoke(app, ["index", "build", str(tmp_path / "nope")])
    assert bad.exit_code == 1
    assert "not a directory" in bad.output


def test_cli_defaults_keep_the_library_s_user_neighbours() -> None:
    """The commands spell the default out (importing numpy would slow every command's start); it
    must stay the library's."""
    import inspect

    from kolfeed.commands_bench import serve_command
    from kolfeed.commands_index import build
    from recsys.user_neighbours import DEFAULT_K

    for command in (build, serve_command):
        assert inspect.signature(command).parameters["user_neighbours"].default.default == DEFAULT_K


def test_ranking_thread_searches_with_one_openmp_thread() -> None:
    """OpenMP keeps its thread count per thread: a ranker built in a helper thread (the service's
    lifespan loads the model in one) must still make the thread that ranks search with one."""
    import threading

    from recsys.ranking.context import UserContext
    from recsys.ranking.feed import FeedRanker
    from recsys.ranking.random_model import random_run
    from recsys.ranking.variants import load_variants

    model = random_run(n_items=500, n_users=50, n_kols=20).feed_model()
    made: list[FeedRanker] = []
    t = threading.Thread(target=lambda: made.append(FeedRanker(model)))
    t.start()
    t.join()
    faiss.omp_set_num_threads(2)  # what a fresh thread has on a 2-core machine
    made[0].rank(UserContext(user_id=int(model.users.ids[0])), load_variants()["default"], 10)
    assert faiss.omp_get_max_threads() == 1

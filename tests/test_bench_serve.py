"""Smoke test of ``kolfeed bench serve`` on a tiny catalog: every stage runs end to end against the real
Redis and a real ``kolfeed serve`` subprocess, and the report is complete. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from kolfeed.bench.loadgen import UNKNOWN_USER_BASE, LoadSpec, summarize, user_ids
from kolfeed.bench.serve import ServeBenchConfig, run
from tests.conftest import REDIS_TEST_DB

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_user_ids_mix_known_and_unknown() -> None:
    ids = user_ids(LoadSpec(port=1, rate=1, duration_s=1, users=50, unknown_frac=0.5, seed=1), 400)
    known = ids < 50
    assert ((ids >= UNKNOWN_USER_BASE) | known).all()
    assert 100 < int(known.sum()) < 300


def test_fixed_page_ranker_ranks_once_per_variant_and_size() -> None:
    from types import SimpleNamespace

    from kolfeed.bench.floor_serve import FixedPageRanker

    calls: list[int] = []

    class Inner:
        def rank(self, ctx: object, variant: object, limit: int, **kw: object) -> list[int]:
            calls.append(limit)
            return list(range(limit))

    ranker = FixedPageRanker(Inner())
    a, b = SimpleNamespace(name="a"), SimpleNamespace(name="b")
    first = ranker.rank("u1", a, 3, trending=None)
    first.append(99)  # a caller's copy: the kept page is not changed
    assert ranker.rank("u2", a, 3) == [0, 1, 2]
    assert ranker.rank("u3", a, 2) == [0, 1] and ranker.rank("u4", b, 3) == [0, 1, 2]
    assert calls == [3, 2, 3]


def test_summarize_counts_errors_and_percentiles() -> None:
    import numpy as np

    out = summarize(np.array([0.001, 0.002, 0.003, 0.1]), np.array([200, 200, 503, 0]), 1, 2.0)
    assert out["ok"] == 2 and out["errors"] == 2
    assert out["error_statuses"] == {"0": 1, "503": 1}
    assert out["achieved_rps"] == 2.0 and out["max_ms"] == 100.0


@pytest.mark.parametrize(
    ("factory", "param", "workers"), [("HNSW16", "ef_search", 1), ("MIPS,IVF16,Flat", "nprobe", 2)]
)
def test_bench_serve_end_to_end_tiny(
    redis_server: str, tmp_path: Path, factory: str, param: str, workers: int
) -> None:
    cfg = ServeBenchConfig(
        items=1500,
        users=120,
        kols=30,
        dim=8,
        factory=factory,
        workers=workers,
        search_params=[4, 8, 16],
        recall_queries=50,
        redis_url=f"{redis_server}/{REDIS_TEST_DB}",
        events_per_user=6,
        rate=40,
        duration_s=1.0,
        step_rates=[20, 40],
        step_duration_s=0.5,
        warmup_s=0.3,
        in_process_calls=20,
        workdir=tmp_path / "work",
        floor=workers == 2,
    )
    report = run(cfg, tmp_path / "results", command="test")
    saved = json.loads((tmp_path / "results" / "serve.json").read_text())
    assert (tmp_path / "results" / "serve.png").stat().st_size > 0
    assert saved["summary"] == report["summary"]
    main = report["http"]["target_rate"]
    assert main["requests"] == 40 and main["ok"] + main["errors"] == 40
    assert 1 <= len(report["http"]["steps"]) <= 2
    assert report["redis"]["events"] == 120 * 6
    build = report["build"]
    assert build["search_param"] == param and build["search_param_served"] in (4, 8, 16)
    assert 0.0 <= build["recall_served"] <= 1.0
    assert report["in_process"]["rank"]["calls"] == 20
    mem = report["http"]["server_after_load"]
    # the uvicorn parent, its workers (and multiprocessing's resource tracker) are all counted
    assert mem["VmHWM"] > 0 and len(mem["processes"]) >= 1 + (workers if workers > 1 else 0)
    assert report["summary"]["server_processes"] == len(mem["processes"])
    if cfg.floor:  # the fixed-page service got the same load, and the summary pairs the two by rate
        floor = report["http_floor"]["target_rate"]
        assert floor["requests"] == 40 and floor["ok"] == 40
        rows = report["summary"]["floor"]["by_rate"]
        assert rows[0]["offered_rps"] == 40 and rows[0]["floor_server_cpu_ms_per_request"] > 0
        assert len(rows) == 1 + min(len(report["http"]["steps"]), len(report["http_floor"]["steps"]))
    else:
        assert "http_floor" not in report and "floor" not in report["summary"]
    # the index was served with the search parameter recorded next to it
    info = json.loads((tmp_path / "work" / "runs" / "synthetic" / "index.json").read_text())
    assert info[param] == build["search_param_served"]
    from recsys.index import _find_hnsw, _find_ivf
    from recsys.ranking.feed_model import FeedModel

    index = FeedModel.load(tmp_path / "work" / "runs" / "synthetic").index
    if param == "ef_search":
        hnsw = _find_hnsw(index)
        assert hnsw is not None and hnsw.hnsw.efSearch == info["ef_search"]
    else:
        ivf = _find_ivf(index)
        assert ivf is not None and ivf.nprobe == info["nprobe"]
    # nothing left behind in the benchmark's Redis db under its prefix
    client = redis.Redis.from_url(f"{redis_server}/{REDIS_TEST_DB}")
    try:
        prefix = report["store"].split("prefix=", 1)[1]
        assert prefix.startswith("kfbench:")
        assert not list(client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()

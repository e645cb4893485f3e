"""``kolfeed bench saturation``: wrk's report is read right, the Lua script spreads requests over the
world's users, and a tiny run goes end to end (both servers, alternating rounds). No timing asserts."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kolfeed.bench.harness import HarnessError
from kolfeed.bench.loadgen import UNKNOWN_USER_BASE
from kolfeed.bench.saturation import SaturationConfig, parse_wrk, run, run_wrk, wrk_script
from kolfeed.bench.serve import ServeBenchConfig

WRK_REPORT = """Running 20s test @ http://127.0.0.1:40001/v1/feed
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    43.91ms   10.12ms 120.50ms   71.20%
    Req/Sec   730.21     60.10     0.90k    68.00%
  Latency Distribution
     50%   42.10ms
     75%   49.00ms
     90%  800.00us
     99%    1.20s
  14604 requests in 20.01s, 52.30MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    729.84
Transfer/sec:      2.61MB
"""


def test_parse_wrk_reads_counts_units_and_errors() -> None:
    out = parse_wrk(WRK_REPORT)
    assert out["requests"] == 14604 and out["seconds"] == 20.01
    assert out["requests_per_s"] == 729.84
    assert out["non_2xx"] == 4 and out["socket_errors"] == 3
    assert out["latency_ms"] == {"p50": 42.1, "p75": 49.0, "p90": 0.8, "p99": 1200.0}
    assert out["ok_per_s"] == round((14604 - 4) / 20.01, 1)


def test_parse_wrk_without_a_summary_fails_clearly() -> None:
    with pytest.raises(HarnessError, match="no summary"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_script_draws_known_and_unknown_users(tmp_path: Path) -> None:
    """wrk itself runs the script against a recording HTTP server."""
    paths: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script = tmp_path / "users.lua"
    script.write_text(wrk_script(users=50, unknown_frac=0.5, limit=7, seed=3))
    try:
        out = run_wrk(server.server_address[1], script, duration_s=1, connections=2, threads=1)
    finally:
        server.shutdown()
        server.server_close()
    assert out["requests"] > 0 and len(paths) >= 20
    assert all(p.startswith("/v1/feed?user_id=") and p.endswith("&limit=7") for p in paths)
    uids = [int(p.split("user_id=")[1].split("&")[0]) for p in paths]
    known = [u for u in uids if u < 50]
    assert all(u >= UNKNOWN_USER_BASE for u in uids if u >= 50)
    assert len(set(known)) >= 5 and len(known) < len(uids)  # both kinds, known ones varied


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_bench_saturation_end_to_end_tiny(redis_url: str, tmp_path: Path) -> None:
    world = ServeBenchConfig(
        items=1500,
        users=120,
        kols=30,
        dim=8,
        factory="MIPS,IVF16,Flat",
        search_params=[4, 8, 16],
        recall_queries=50,
        redis_url=redis_url,
        events_per_user=6,
        workers=2,
        workdir=tmp_path / "work",
    )
    cfg = SaturationConfig(world=world, duration_s=1, warmup_s=0.5, connections=4, rounds=2)
    report = run(cfg, tmp_path / "results", command="test")
    saved = json.loads((tmp_path / "results" / "saturation.json").read_text())
    assert saved["summary"] == report["summary"]
    assert (tmp_path / "results" / "saturation.png").stat().st_size > 0
    assert [r["round"] for r in saved["feed"]] == [0, 1] and len(saved["trivial"]) == 2
    for row in saved["feed"] + saved["trivial"]:
        assert row["requests"] > 0 and row["non_2xx"] == 0
        assert row["server_cpu_ms_per_request"] > 0
    s = saved["summary"]
    assert s["feeds_per_s"] > 0 and s["trivial_per_s"] > 0
    assert s["share_of_trivial"] == round(s["feeds_per_s"] / s["trivial_per_s"], 4)

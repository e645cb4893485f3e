"""Reliability against real processes: a private redis-server SIGKILLed and restarted mid-load, the
service SIGKILLed mid-ingest, overload at 3x capacity, and a password-protected Redis.

Every process listens on a free 127.0.0.1 port and is killed by the harness; loads are bounded in
count and time. Assertions are on counts (answered, acknowledged, recovered), never on wall-clock.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from kolfeed.bench.chaos import (
    KillParams,
    OutageParams,
    OverloadParams,
    outage_scenario,
    overload_scenario,
    sigkill_scenario,
)
from kolfeed.bench.harness import HOST, RawClient, RedisServer, ServiceConfig, ServiceProcess
from tests.ranking_fixtures import Tiny, make_tiny_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RANKING = REPO / "configs" / "ranking"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_tiny_run(tmp_path / "runs" / "run1")


def test_redis_outage_keeps_answering_and_loses_no_acknowledged_event(run_dir: Path, tmp_path: Path) -> None:
    params = OutageParams(
        feed_requests=240, event_batches=80, events_per_batch=5, duration_s=3.0, kill_at_s=0.8, down_s=1.0
    )
    r = outage_scenario(run_dir, tmp_path, params, ranking_dir=RANKING)
    feed, events = r["feed"], r["events"]
    assert feed["sent"] == 240
    assert feed["answered"] == 240 and feed["errors"] == 0, feed["statuses"]
    assert feed["degraded"] > 0, "the outage was not observed by any feed request"
    assert feed["degraded"] < 240, "the feed never recovered"
    # every batch is acknowledged (the log, not Redis, is the commit point) ...
    assert events["batches_acknowledged"] == 80, events["statuses"]
    assert events["acknowledged"] == 400
    # ... and after recovery the restarted (empty) Redis holds each acknowledged event
    assert events["recovered_in_store"] == events["acknowledged"]
    assert events["in_log"] == events["acknowledged"]
    status = r["readyz_after"]["event_log"]
    assert status["pending"] == 0 and status["store_rebuilds"] >= 2  # start-up + after the restart


def test_sigkill_during_ingestion_keeps_every_acknowledged_event(run_dir: Path, tmp_path: Path) -> None:
    r = sigkill_scenario(
        run_dir, tmp_path, KillParams(writers=6, events_per_batch=5, kill_after_s=0.7), ranking_dir=RANKING
    )
    assert r["acknowledged"] > 0
    assert r["in_log_at_acked_seq"] == r["acknowledged"]
    assert r["statuses"].get("connection_error", 0) >= 1, "the kill did not interrupt ingestion"
    after = r["readyz_after_restart"]
    assert after["ready"] is True and after["event_log"]["last_seq"] == r["log_total"]


def test_sigkill_under_32_concurrent_single_event_clients_loses_nothing_from_log_or_export(
    run_dir: Path, tmp_path: Path
) -> None:
    from kolfeed.bench.ingest import IngestParams, sigkill_check

    r = sigkill_check(run_dir, tmp_path, IngestParams(concurrency=32, kill_after_s=1.0))
    assert r["acknowledged"] > 32, r
    assert r["in_log_at_acked_seq"] == r["acknowledged"] == r["in_export_once"], r
    assert r["lost"] == 0 and r["exported_twice"] == 0
    assert r["logged_total"] >= r["acknowledged"]


def test_overload_answers_503_fast_instead_of_timing_out(run_dir: Path, tmp_path: Path) -> None:
    params = OverloadParams(max_inflight=4, rank_delay_s=0.03, measure_s=1.0, overload_s=1.5, factor=3.0)
    r = overload_scenario(run_dir, tmp_path, params, ranking_dir=RANKING)
    assert r["sustainable_rps"] > 0
    assert r["accepted"] > 0
    assert r["rejected_503"] > 0, "3x the capacity was offered and nothing was shed"
    assert r["rejected_with_retry_after"] == r["rejected_503"]
    assert r["client_timeouts"] == 0 and r["other_errors"] == 0
    # bounded: far below the client timeout (10 s); the service's own deadline is 5 s
    assert r["accepted_latency"]["max_ms"] < 5_000
    assert r["rejected_latency"]["max_ms"] < 5_000


async def _get(port: int, path: str) -> tuple[int, str]:
    client = RawClient(port)
    try:
        reply = await client.request("GET", path)
    finally:
        await client.close()
    return reply.status, reply.body.decode()


async def _post(port: int, path: str, payload: object) -> tuple[int, dict[str, object]]:
    client = RawClient(port)
    try:
        reply = await client.request("POST", path, payload)
    finally:
        await client.close()
    return reply.status, reply.json()


async def test_password_redis_works_and_the_password_never_shows(run_dir: Path, tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    log_path = tmp_path / "service.log"
    with RedisServer(password=password) as redis:
        cfg = ServiceConfig(run_dir, redis.url(), tmp_path / "eventlog", RANKING, log_path=log_path)
        with ServiceProcess(cfg) as svc:
            status, text = await _get(svc.port, f"/v1/feed?user_id={Tiny.USER}&limit=5")
            assert status == 200 and json.loads(text)["degraded"] is False
            status, body = await _post(
                svc.port, "/v1/events", {"events": [{"user_id": 1, "item_id": 1001, "action": "buy"}]}
            )
            assert status == 202 and body["applied_to_store"] is True and body["first_seq"] == 1
            for path in ("/metrics", "/readyz", "/openapi.json"):
                status, text = await _get(svc.port, path)
                assert status == 200 and password not in text, path
        output = log_path.read_text()
        assert password not in output

        wrong = "bad-" + secrets.token_hex(8)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kolfeed.cli",
                "serve",
                "--run",
                str(run_dir),
                "--runs",
                str(run_dir.parent),
                "--store",
                redis.url(password=wrong),
                "--ranking-dir",
                str(RANKING),
                "--host",
                HOST,
                "--port",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={"KOLFEED_EVENT_LOG_DIR": str(tmp_path / "eventlog2"), "PATH": "/usr/bin:/bin"},
        )
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error:") and "credentials" in message, proc.stderr
    assert wrong not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr

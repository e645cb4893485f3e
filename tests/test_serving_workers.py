"""Several worker processes: a reload reaches every worker, and `kolfeed serve --workers N` runs.

In-process tests drive two apps that share a served-run pointer (what two worker processes share);
the end-to-end test starts the real `kolfeed serve --workers 2` on real Redis and checks both
processes answer, each writes its own event log, and a reload sent to one is followed by both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.run_pointer import RunPointer, ServedRun
from tests.ranking_fixtures import Tiny, copy_shipped_variants, make_tiny_run, tiny_runs
from tests.service_harness import (
    TOKEN,
    auth,
    free_port,
    http_get,
    make_settings,
    run_serve,
    running,
    serve_process,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tiny_runs(tmp_path / "runs", 1, 2)


def worker_app(runs_root: Path, tmp_path: Path, name: str = "w", **changes: Any) -> FastAPI:
    """One worker process's app; every worker of a test shares ``tmp_path/served-run.json``."""
    settings = make_settings(
        runs_root,
        copy_shipped_variants(tmp_path / name / "ranking"),
        run_dir=runs_root / "run1",
        served_run_file=tmp_path / "served-run.json",
        follow_interval_s=0.05,
        event_log_dir=None,
        **changes,
    )
    return create_app(settings)


async def served_version(client: Any) -> int:
    r = await client.get("/v1/admin/model", headers=auth())
    assert r.status_code == 200, r.text
    version: int = r.json()["version"]
    return version


async def wait_for_version(client: Any, version: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await served_version(client) != version:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker never switched to version {version}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def two_workers(runs_root: Path, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    a, b = worker_app(runs_root, tmp_path, "a"), worker_app(runs_root, tmp_path, "b")
    async with running(a) as ca, running(b) as cb:
        yield ca, cb


async def test_a_reload_sent_to_one_worker_is_followed_by_the_other(runs_root: Path, tmp_path: Path) -> None:
    async with two_workers(runs_root, tmp_path) as (ca, cb):
        assert await served_version(ca) == 1 and await served_version(cb) == 1
        r = await ca.post("/v1/admin/reload", json={"run_dir": "run2"}, headers=auth())
        assert r.status_code == 200, r.text
        assert await served_version(ca) == 2
        await wait_for_version(cb, 2)
        feed = await cb.get("/v1/feed", params={"user_id": Tiny.USER})
        assert feed.json()["model_version"] == 2
        metrics = (await cb.get("/metrics")).text
        assert 'kolfeed_model_reloads_total{outcome="followed"} 1.0' in metrics
        # and back: the pointer names run1 again
        r = await cb.post("/v1/admin/reload", json={"run_dir": "run1"}, headers=auth())
        assert r.status_code == 200
        await wait_for_version(ca, 1)


async def test_a_worker_keeps_its_model_when_the_followed_run_is_corrupt(
    runs_root: Path, tmp_path: Path
) -> None:
    bad = make_tiny_run(runs_root / "run3", version=3)
    async with two_workers(runs_root, tmp_path) as (ca, cb):
        (bad / "item_emb.npy").write_bytes(b"garbage")  # corrupted after it was pointed at
        RunPointer(tmp_path / "served-run.json").write(ServedRun(bad, "tiny-v3", 3))
        deadline = time.monotonic() + 10
        while 'outcome="follow_failed"' not in (await cb.get("/metrics")).text:
            assert time.monotonic() < deadline, "the follower never tried the new run"
            await asyncio.sleep(0.02)
        assert await served_version(ca) == 1 and await served_version(cb) == 1
        assert (await cb.get("/v1/feed", params={"user_id": Tiny.USER})).status_code == 200


async def test_a_restarted_worker_serves_the_pointed_run(runs_root: Path, tmp_path: Path) -> None:
    RunPointer(tmp_path / "served-run.json").write(ServedRun(runs_root / "run2", "tiny-v2", 2))
    async with running(worker_app(runs_root, tmp_path)) as client:
        assert await served_version(client) == 2
    # a pointer naming a run that no longer loads falls back to the configured run
    RunPointer(tmp_path / "served-run.json").write(ServedRun(tmp_path / "gone", "x", 9))
    async with running(worker_app(runs_root, tmp_path, "again")) as client:
        assert await served_version(client) == 1


def test_workers_need_a_shared_store(tmp_path: Path) -> None:
    make_tiny_run(tmp_path / "runs" / "r1")
    code, out = run_serve("--runs", str(tmp_path / "runs"), "--store", "memory://", "--workers", "2")
    assert code == 1 and "needs a store the workers share" in out and "Traceback" not in out


# ------------------------------------------------------------------ the real thing


@pytest.mark.redis
@pytest.mark.slow
def test_serve_with_two_worker_processes(runs_root: Path, tmp_path: Path, redis_url: str) -> None:
    import os

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_dir = tmp_path / "eventlog"
    env = {**os.environ, "KOLFEED_ADMIN_TOKEN": TOKEN, "KOLFEED_EVENT_LOG_DIR": str(log_dir)}
    args = [sys.executable, "-m", "kolfeed.cli", "serve", "--run", str(runs_root / "run1")]
    args += ["--runs", str(runs_root), "--store", redis_url, "--port", str(port), "--workers", "2"]
    with serve_process(args, env, tmp_path / "serve.log") as proc:
        pids: set[int] = set()
        deadline = time.monotonic() + 90
        while len(pids) < 2:  # every new connection goes to whichever worker accepts it first
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            try:
                status, body = http_get(f"{base}/readyz")
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200:
                pids.add(body["pid"])
        status, page = http_get(f"{base}/v1/feed?user_id={Tiny.USER}")
        assert status == 200 and page["items"] and page["model_version"] == 1
        for _ in range(10):  # events reach whichever worker accepts them; each logs in its own dir
            ev = {"events": [{"user_id": Tiny.USER, "item_id": Tiny.ANN_ITEM, "action": "click"}]}
            status, _ = http_get(f"{base}/v1/events", data=json.dumps(ev).encode())
            assert status == 202
        assert sorted(p.name for p in log_dir.iterdir()) == ["worker-0", "worker-1"]
        status, body = http_get(
            f"{base}/v1/admin/reload", headers=auth(), data=json.dumps({"run_dir": "run2"}).encode()
        )
        assert status == 200, body
        deadline = time.monotonic() + 30
        seen: dict[int, int] = {}
        while set(seen) != pids or set(seen.values()) != {2}:
            assert time.monotonic() < deadline, f"versions by worker: {seen}"
            _, ready = http_get(f"{base}/readyz")
            seen[ready["pid"]] = ready["model_version"]
        assert proc.poll() is None

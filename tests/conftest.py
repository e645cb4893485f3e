"""Shared pytest fixtures. Keep one clearly marked section per area."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

# ---------------------------------------------------------------------------------------------------
# Redis: the REAL server at 127.0.0.1:6379 (never mocked). Feature-store tests use db 15 only, each
# with its own key prefix; the db is FLUSHDB'd before and after each test that asks for `redis_url`.
# ---------------------------------------------------------------------------------------------------
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_TEST_DB = int(os.environ.get("KOLFEED_TEST_REDIS_DB", "15"))
"""db 15 unless KOLFEED_TEST_REDIS_DB names another (parallel checkouts on one machine)."""


def redis_answers(port: int, password: str | None = None) -> bool:
    import redis

    client = redis.Redis(
        host=REDIS_HOST, port=port, password=password, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server() -> str:
    """Base URL of the test Redis; started (daemonized, no persistence) if it is not running."""
    if not redis_answers(REDIS_PORT):
        if shutil.which("redis-server") is None:
            pytest.fail("Redis is not running at 127.0.0.1:6379 and redis-server is not installed")
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                REDIS_HOST,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(REDIS_PORT):
            if time.monotonic() > deadline:
                pytest.fail("started redis-server but it did not answer at 127.0.0.1:6379 within 10 s")
            time.sleep(0.05)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """URL of the test database (db 15), emptied before and after the test."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_TEST_DB)
    client.flushdb()
    try:
        yield f"{redis_server}/{REDIS_TEST_DB}"
    finally:
        client.flushdb()
        client.close()


# ---------------------------------------------------------------------------------------------------
# Reliability: every app a test builds keeps its durable event log in that test's tmp dir (never in
# the repo's default var/eventlog, and never shared between tests). Tests that pass event_log_dir win.
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _event_log_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOLFEED_EVENT_LOG_DIR", str(tmp_path_factory.mktemp("eventlog")))


# ---------------------------------------------------------------------------------------------------
# Redis Cluster: three primaries on free loopback ports, started once per test session by the tests
# themselves (kolfeed/bench/local_cluster.py) and stopped at the end. Tests that kill a node start
# their own cluster instead, so this one stays whole for the others.
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from kolfeed.bench.local_cluster import LocalClusterError, LocalRedisCluster

    try:
        cluster = LocalRedisCluster.start(tmp_path_factory.mktemp("redis-cluster"))
    except LocalClusterError as exc:
        pytest.fail(f"could not start a local Redis Cluster: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()

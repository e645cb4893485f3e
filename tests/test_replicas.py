"""Replicas on separate hosts share only the store and the runs directory.

Each replica is a real ``kolfeed serve`` in its own network namespace (made by the test: ``ip netns``
and a veth pair to the test's namespace), with its own working directory and event log; they reach a
redis-server the test starts on the veth addresses. Where namespaces cannot be made (not root, no
``ip``), the replicas are separate processes on loopback with separate working directories instead.
An admin reload on one replica must reach the other within seconds, through the store, and a replica
started afterwards must serve the reloaded run although it was started with the old one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kolfeed.bench.harness import free_port
from tests.ranking_fixtures import make_tiny_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TOKEN = "replica-test-token"
FOLLOW_S = 0.5
"""Follow interval of the replicas; a reload must arrive well within FOLLOW_WAIT_S."""
FOLLOW_WAIT_S = 10.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _namespaces_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"kfprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError:
        return False
    _ip("netns", "del", probe)
    return True


@dataclass
class Host:
    """Where one replica runs: a namespace (None: this one) and the address it listens on."""

    netns: str | None
    address: str
    store_host: str
    """The Redis address as this host sees it."""


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Three hosts: network namespaces joined to this one by veth pairs, else loopback."""
    if not _namespaces_available():
        yield [Host(None, "127.0.0.1", "127.0.0.1") for _ in range(3)]
        return
    tag = os.getpid() % 10_000
    subnet = 100 + os.getpid() % 100
    made: list[tuple[str, str]] = []
    try:
        out = []
        for i in range(3):
            ns, veth = f"kf{tag}h{i}", f"kf{tag}v{i}"
            _ip("netns", "add", ns)
            made.append((ns, veth))
            _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            _ip("link", "set", f"{veth}p", "netns", ns)
            _ip("addr", "add", f"10.{subnet}.{i}.1/24", "dev", veth)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"10.{subnet}.{i}.2/24", "dev", f"{veth}p")
            _ip("-n", ns, "link", "set", f"{veth}p", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            out.append(Host(ns, f"10.{subnet}.{i}.2", f"10.{subnet}.{i}.1"))
        yield out
    finally:
        for ns, veth in made:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def shared_redis(hosts: list[Host], tmp_path: Path) -> Iterator[int]:
    """A redis-server listening on every host's view of this machine (no persistence)."""
    port = free_port()
    binds = sorted({"127.0.0.1", *(h.store_host for h in hosts)})
    args = ["redis-server", "--port", str(port), "--bind", *binds, "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--protected-mode", "no", "--logfile", str(tmp_path / "redis.log")])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout != b"PONG\n":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


class Replica:
    def __init__(self, host: Host, redis_port: int, workdir: Path, run_dir: Path) -> None:
        self.host = host
        self.port = 8000 if host.netns else free_port()
        workdir.mkdir(parents=True)
        self.workdir = workdir
        cmd = [sys.executable, "-m", "kolfeed.cli", "serve", "--run", str(run_dir)]
        cmd += ["--runs", str(run_dir.parent), "--store", f"redis://{host.store_host}:{redis_port}/0"]
        cmd += ["--host", host.address, "--port", str(self.port), "--log-level", "warning"]
        cmd += ["--ranking-dir", str(REPO / "configs" / "ranking")]
        if host.netns:
            cmd = ["ip", "netns", "exec", host.netns, *cmd]
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "KOLFEED_ADMIN_TOKEN": TOKEN,
            "KOLFEED_FOLLOW_INTERVAL_S": str(FOLLOW_S),
            "KOLFEED_EVENT_LOG_DIR": str(workdir / "var" / "eventlog"),
            "KOLFEED_EXPERIMENTS_DIR": str(REPO / "configs" / "experiments"),
        }
        self.log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.host.address}:{self.port}{path}",
            data=data,
            method=method,
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, (self.workdir / "serve.log").read_text()
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, (self.workdir / "serve.log").read_text()
            time.sleep(0.2)

    def version(self) -> int:
        status, info = self.call("GET", "/v1/admin/model")
        assert status == 200 and isinstance(info, dict), info
        return int(info["version"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def test_a_reload_on_one_replica_reaches_the_others_and_later_ones_through_the_store(
    hosts: list[Host], shared_redis: int, tmp_path: Path
) -> None:
    runs = tmp_path / "shared" / "runs"  # the shared storage every host mounts at the same path
    run1, run2 = make_tiny_run(runs / "run1", version=1), make_tiny_run(runs / "run2", version=2)
    replicas: list[Replica] = []
    try:
        replicas = [Replica(hosts[i], shared_redis, tmp_path / f"host{i}", run1) for i in range(2)]
        for r in replicas:
            r.wait_ready()
        a, b = replicas
        assert a.version() == b.version() == 1

        status, body = a.call("POST", "/v1/admin/reload", {"run_dir": str(run2)})
        assert status == 200, body
        assert a.version() == 2
        deadline = time.monotonic() + FOLLOW_WAIT_S
        while b.version() != 2:
            assert time.monotonic() < deadline, "the reload did not reach the other replica"
            time.sleep(0.1)

        late = Replica(hosts[2], shared_redis, tmp_path / "host2", run1)  # started with the OLD run
        replicas.append(late)
        late.wait_ready()
        assert late.version() == 2
        status, page = late.call("GET", "/v1/feed?user_id=1")
        assert status == 200 and isinstance(page, dict) and page["items"]
    finally:
        for r in replicas:
            r.stop()

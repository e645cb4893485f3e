"""A throw-away Redis Cluster of N primaries on loopback, for the tests and ``kolfeed bench cluster``.

Why here and not in the store: production clusters are run by their operators; this only starts
``redis-server --cluster-enabled yes`` processes on free ports in a scratch directory (no persistence,
``cluster-require-full-coverage no`` so the other primaries keep serving when one dies), joins them
with ``redis-cli --cluster create``, and can kill or restart one primary to show what a dead shard
does. Every process it starts is stopped by :meth:`LocalRedisCluster.stop`, by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_BUS_OFFSET = 10_000
"""Redis Cluster nodes talk to each other on port + 10000."""


class LocalClusterError(RuntimeError):
    """redis-server / redis-cli missing, or the cluster did not come up."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


EPHEMERAL_START = 32_768
"""Linux's first ephemeral port: client sockets take ports above it at any time, so a node port and
its bus port are both kept below it."""


def free_ports(count: int, start: int = 20_000) -> list[int]:
    """``count`` ports whose cluster-bus port (+10000) is free as well, both below the ephemeral range."""
    ports: list[int] = []
    port = start + (os.getpid() % 300) * 7
    while len(ports) < count:
        port += 1
        if port + CLUSTER_BUS_OFFSET >= EPHEMERAL_START:
            raise LocalClusterError("no free ports left for a local Redis Cluster")
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            ports.append(port)
    return ports


def _answers(port: int) -> bool:
    try:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=2
        )
    except subprocess.TimeoutExpired:
        return False
    return out.stdout.strip() == "PONG"


@dataclass
class LocalRedisCluster:
    workdir: Path
    ports: list[int]
    node_timeout_ms: int = 1_000
    pids: dict[int, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @classmethod
    def start(cls, workdir: Path, primaries: int = 3, node_timeout_ms: int = 1_000) -> LocalRedisCluster:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise LocalClusterError(f"{tool} is not installed; a local Redis Cluster needs it")
        cluster = cls(Path(workdir), free_ports(primaries), node_timeout_ms)
        try:
            for port in cluster.ports:
                cluster.start_node(port)
            nodes = [f"127.0.0.1:{p}" for p in cluster.ports]
            created = subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                raise LocalClusterError(
                    f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
                )
            cluster.wait_ok()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def start_node(self, port: int) -> None:
        """Start (or restart, keeping its node id and slots from nodes-<port>.conf) one node."""
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        pidfile = node_dir / "redis.pid"
        pidfile.unlink(missing_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-require-full-coverage", "no",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--pidfile", str(pidfile),
                "--logfile", str(node_dir / "redis.log"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and _answers(port)):
            if time.monotonic() > deadline:
                raise LocalClusterError(f"redis-server on port {port} did not answer within 10 s")
            time.sleep(0.05)
        self.pids[port] = int(pidfile.read_text().strip())

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node reports ``cluster_state:ok`` (slots assigned and agreed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True, timeout=2
                ).stdout
                for p in self.ports
                if p in self.pids
            ]
            if states and all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise LocalClusterError(f"local Redis Cluster not ok within {timeout_s:.0f} s")
            time.sleep(0.1)

    def kill(self, index: int) -> int:
        """SIGKILL the primary ``index`` (no persistence: its data is gone); returns its port."""
        port = self.ports[index]
        pid = self.pids.pop(port, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _answers(port) and time.monotonic() < deadline:
                time.sleep(0.02)
        return port

    def restart(self, index: int) -> None:
        """Start the primary ``index`` again: same slots, empty data; waits for the cluster to agree."""
        self.start_node(self.ports[index])
        self.wait_ok()

    def stop(self) -> None:
        for port in list(self.pids):
            self.kill(self.ports.index(port))

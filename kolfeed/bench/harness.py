"""Real processes for failure tests: a private redis-server, the feed service, and a small HTTP client.

Why our own processes: a chaos test must kill and restart the real thing (SIGKILL, same port) without
touching the shared Redis at 6379 or anything outside 127.0.0.1. Every process is started on a free
loopback port, owned by a context manager, and killed on exit. The HTTP client is a minimal
keep-alive HTTP/1.1 client on asyncio streams: cheap enough per request that a 2-core machine can
offer several times what the service sustains (httpx costs ~1 ms of client CPU per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


class HarnessError(RuntimeError):
    """A process of the harness did not start or answer (the message says which and why)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _wait(check: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what}: process exited with code {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise HarnessError(f"{what}: not answering after {timeout_s:.0f} s")


# ------------------------------------------------------------------ redis-server
def answers_200(port: int, path: str) -> bool:
    """True when ``GET path`` on 127.0.0.1:``port`` answers 200 within half a second."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return s.recv(32).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def kill_after(svc: ServiceProcess, seconds: float, stop: asyncio.Event) -> None:
    """SIGKILL ``svc`` after ``seconds`` under load, then tell the load's writers to stop."""
    await asyncio.sleep(seconds)
    await asyncio.to_thread(svc.kill)
    stop.set()


class RedisServer:
    """A redis-server on its own port, no persistence: after a kill + restart it is EMPTY."""

    def __init__(self, port: int | None = None, password: str | None = None, log_path: Path | None = None):
        if shutil.which("redis-server") is None:
            raise HarnessError("redis-server is not installed")
        self.port = port if port is not None else free_port()
        self.password = password
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, password: str | None = None) -> str:
        pw = self.password if password is None else password
        auth = f":{pw}@" if pw else ""
        return f"redis://{auth}{HOST}:{self.port}/{db}"

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no", "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _wait(self.answers, 10, f"redis-server on port {self.port}", self.proc)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def kill(self) -> None:
        """SIGKILL (no shutdown, no save) and wait for the port to close."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ------------------------------------------------------------------ the feed service
@dataclass
class ServiceConfig:
    run_dir: Path
    store_url: str
    event_log_dir: Path
    ranking_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra KOLFEED_* settings (e.g. KOLFEED_MAX_INFLIGHT)."""
    rank_delay_s: float = 0.0
    """> 0: serve through :mod:`kolfeed.bench.slow_serve` (ranker sleeps this long): a fixed capacity."""
    fixed_page: bool = False
    """Serve through :mod:`kolfeed.bench.floor_serve` (ranking replaced by a fixed page): the floor."""
    log_path: Path | None = None
    workers: int = 1
    """``kolfeed serve --workers``: worker processes behind one port (needs a redis:// store)."""
    source_dir: Path | None = None
    """Run the service from this source checkout (an older commit, for a before/after benchmark)."""


class ServiceProcess:
    """``kolfeed serve`` (or the slow-ranker launcher) as a subprocess on a free port."""

    def __init__(self, config: ServiceConfig, port: int | None = None) -> None:
        self.config = config
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready_pids: set[int] = set()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        c = self.config
        if c.rank_delay_s > 0:
            args = [sys.executable, "-m", "kolfeed.bench.slow_serve", "--rank-delay", str(c.rank_delay_s)]
        elif c.fixed_page:
            args = [sys.executable, "-m", "kolfeed.bench.floor_serve", "--log-level", "warning"]
        else:
            args = [sys.executable, "-m", "kolfeed.cli", "serve", "--log-level", "warning"]
        args += ["--run", str(c.run_dir), "--runs", str(c.run_dir.parent), "--store", c.store_url]
        args += ["--host", HOST, "--port", str(self.port)]
        if c.workers > 1:
            args += ["--workers", str(c.workers)]
        if c.ranking_dir is not None:
            args += ["--ranking-dir", str(c.ranking_dir)]
        return args

    def start(self, wait: bool = True, timeout_s: float = 60) -> ServiceProcess:
        env = {**os.environ, "KOLFEED_EVENT_LOG_DIR": str(self.config.event_log_dir), **self.config.env}
        src = self.config.source_dir or REPO
        if self.config.source_dir is not None:
            env["PYTHONPATH"] = str(src)
        out = open(self.config.log_path, "ab") if self.config.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=src)
        if wait:
            _wait(self.answers, timeout_s, f"feed service on port {self.port}", self.proc)
            if self.config.workers > 1:
                _wait(self.all_workers_ready, timeout_s, f"{self.config.workers} workers", self.proc)
        return self

    def all_workers_ready(self) -> bool:
        """True once ``workers`` distinct processes answered ``/readyz`` (a new connection each time
        goes to whichever worker accepts it first, so a few tries reach every ready one)."""
        for _ in range(20):
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    raw = b""
                    while chunk := s.recv(65536):
                        raw += chunk
            except OSError:
                return False
            head, _, body = raw.partition(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 200"):
                self._ready_pids.add(int(json.loads(body)["pid"]))
        return len(self._ready_pids) >= self.config.workers

    def answers(self) -> bool:
        return answers_200(self.port, "/livez")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (graceful: the lifespan closes the log and the store), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ------------------------------------------------------------------ a minimal HTTP/1.1 client
MAX_IDLE_S = 2.0
"""Reuse a keep-alive connection only if idle for less than this (uvicorn closes idle ones after 5 s;
reusing one it is closing would look like a service error)."""


@dataclass
class Reply:
    status: int
    """HTTP status; 0 = connection error, -1 = client timeout."""
    latency_s: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """Keep-alive connections to one host:port, at most ``max_connections`` open at once."""

    def __init__(self, port: int, timeout_s: float = 5.0, max_connections: int = 256) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._idle: list[tuple[float, tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, payload: Any = None) -> Reply:
        body = b"" if payload is None else json.dumps(payload).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
        if payload is not None:
            head += "Content-Type: application/json\r\n"
        data = (head + "\r\n").encode() + body
        t0 = time.perf_counter()
        async with self._slots:
            conn = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    conn = self._take_idle() or await asyncio.open_connection(HOST, self.port)
                    status, headers, content = await self._exchange(conn, data)
            except TimeoutError:
                self._drop(conn)
                return Reply(-1, time.perf_counter() - t0)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self._drop(conn)
                return Reply(0, time.perf_counter() - t0)
            if headers.get("connection", "").lower() == "close":
                self._drop(conn)
            else:
                self._idle.append((time.monotonic(), conn))
            return Reply(status, time.perf_counter() - t0, content, headers)

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The most recently used idle connection, if the server cannot have closed it yet."""
        while self._idle:
            used_at, conn = self._idle.pop()
            if time.monotonic() - used_at < MAX_IDLE_S:
                return conn
            self._drop(conn)
        return None

    @staticmethod
    async def _exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        writer.write(data)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        content = await reader.readexactly(length) if length else b""
        return status, headers, content

    def _drop(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn[1].close()

    async def close(self) -> None:
        while self._idle:
            self._drop(self._idle.pop()[1])

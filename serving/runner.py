"""Running the app under uvicorn: one process, or several worker processes on one socket.

Why not ``uvicorn.run``: the port is bound here first, so "listening on ..." is said only once it
is true and a taken port is one clear :class:`ServeError` line, and logging stays as
serving/logs.py configured it (uvicorn would install its own handlers). The workers share nothing
in memory, so they need a shared store (Redis); a reload received by one worker is followed by the
others through the served-run pointer file (serving/run_pointer.py).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI

from features.eventlog import log_is_locked, read_replica, worker_dirs
from serving.settings import Settings

MAX_WORKERS = 64
SHARED_STORE_SCHEMES = ("redis", "rediss", "redis+cluster")


class ServeError(RuntimeError):
    """The service cannot start; the message says why in one line."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, inheritable by worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_event_log_free(settings: Settings) -> None:
    """One process writes a log directory; a second server on the same one is refused up front, and
    so is a server whose ``--replica`` differs from the one recorded in the log."""
    directory = settings.event_log_dir
    if directory is not None and not settings.event_log_per_worker and log_is_locked(directory):
        raise ServeError(
            f"event log {directory} is in use by another kolfeed serve; stop it, or give this one its "
            "own --event-log-dir"
        )
    if directory is not None and settings.replica is not None and directory.is_dir():
        for d in [directory, *worker_dirs(directory)]:
            recorded = read_replica(d)
            if recorded is not None and recorded != settings.replica:
                raise ServeError(
                    f"event log {d} belongs to replica {recorded!r}, this server is --replica "
                    f"{settings.replica!r}; give each replica its own --event-log-dir"
                )


def worker_environment(settings: Settings, log_format: str, log_level: str) -> dict[str, str]:
    """The ``KOLFEED_*`` variables worker processes build their Settings from."""
    url = settings.store_url.get_secret_value()
    if urlsplit(url).scheme not in SHARED_STORE_SCHEMES:
        scheme = url.split("://")[0]
        raise ServeError(
            f"--workers > 1 needs a store the workers share (redis://...); {scheme}:// lives in one process"
        )
    if settings.run_dir is None:
        raise ServeError("several workers need the run directory resolved first")
    pointer = Path(tempfile.mkdtemp(prefix="kolfeed-serve-")) / "served-run.json"
    env = {
        "KOLFEED_RUN_DIR": str(settings.run_dir.resolve()),
        "KOLFEED_RUNS_ROOT": str(settings.runs_root.resolve()),
        "KOLFEED_STORE_URL": url,
        "KOLFEED_RANKING_DIR": str(settings.ranking_dir.resolve()),
        "KOLFEED_DEV_MODE": "true" if settings.dev_mode else "false",
        "KOLFEED_SERVED_RUN_FILE": str(pointer),
        "KOLFEED_EVENT_LOG_PER_WORKER": "true",
        "KOLFEED_LOG_FORMAT": log_format,
        "KOLFEED_LOG_LEVEL": log_level,
    }
    if settings.event_log_dir is not None:
        env["KOLFEED_EVENT_LOG_DIR"] = str(settings.event_log_dir.resolve())
    if settings.replica is not None:
        env["KOLFEED_REPLICA"] = settings.replica
    return env


def run(
    app: FastAPI | None,
    host: str,
    port: int,
    log_level: str,
    workers: int = 1,
    on_listening: Callable[[str], None] | None = None,
    factory: str = "serving.app:create_app",
) -> None:
    """Bind, announce, serve until stopped. ``app`` for one process; ``None`` with ``workers`` > 1
    (each worker builds the app by calling ``factory``, an import string; the service's reads the
    environment, see :func:`worker_environment`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock = bind_socket(host, port)
    target: FastAPI | str = app if app is not None else factory
    config = uvicorn.Config(
        target,
        factory=app is None,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        log_level=log_level,
        access_log=False,
    )
    shown = f"[{host}]" if ":" in host else host
    if on_listening is not None:
        on_listening(f"http://{shown}:{port}")
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            if not server.started:
                raise ServeError("the service did not start; see the log lines above")
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def set_worker_environment(env: dict[str, str]) -> None:
    """Workers are spawned processes that read their settings from the environment."""
    os.environ.update(env)

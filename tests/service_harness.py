"""What the service tests share: settings for a test app, an in-process client, the admin token,
a real ``kolfeed serve`` process on a free port, and the CLI runner. Test modules import helpers
from here, never from each other."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import typer
from fastapi import FastAPI
from typer.testing import CliRunner

from kolfeed import commands_serve
from serving.settings import Settings

REPO = Path(__file__).resolve().parents[1]


TOKEN = "test-admin-token"


def make_settings(runs_root: Path, ranking_dir: Path, **changes: Any) -> Settings:
    data: dict[str, Any] = {
        "runs_root": runs_root,
        "ranking_dir": ranking_dir,
        "store_url": "memory://",
        "admin_token": TOKEN,
        "request_deadline_s": 5.0,  # generous: tests must not depend on machine speed
        "experiments_dir": None,  # arms are tested in test_serving_experiments.py
    }
    data.update(changes)
    return Settings(**data)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kolfeed.test") as client:
            yield client


async def feed(client: httpx.AsyncClient, user_id: object, **params: Any) -> dict[str, Any]:
    """GET /v1/feed, asserting a 200, as its JSON body."""
    r = await client.get("/v1/feed", params={"user_id": user_id, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def post_events(client: httpx.AsyncClient, *events: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/events", json={"events": list(events)})


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli_app(*commands: ModuleType) -> typer.Typer:
    """A Typer app with the command groups of ``commands`` (kolfeed.commands_* modules) registered."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    for module in commands:
        module.register(app)
    return app


def serve_app() -> typer.Typer:
    return cli_app(commands_serve)


def run_serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(serve_app(), ["serve", *args])
    return result.exit_code, result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, Any]:
    head = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=head)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # a new connection each time
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def serve_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` with output to ``log``; stopped (``stop_process``) when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            yield proc
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()

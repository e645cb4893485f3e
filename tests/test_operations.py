"""Operating the service: structured logs with request ids, one-line start-up errors, the shipped
configs found from any directory, version and module entry points, no progress bars in log files."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from features.eventlog import EventLog, log_is_locked
from kolfeed import commands_serve
from recsys.progress import progress
from recsys.shipped import resolve_config_path
from serving.app import create_app
from serving.logs import ConsoleFormatter, JsonFormatter, configure_logging, new_request_id
from serving.runner import ServeError, bind_socket
from serving.settings import Settings
from tests.ranking_fixtures import make_tiny_run

REPO = Path(__file__).resolve().parents[1]


def run_serve(*args: str) -> tuple[int, str]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    commands_serve.register(app)
    result = CliRunner().invoke(app, ["serve", *args])
    return result.exit_code, result.output


def kolfeed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "kolfeed", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_version_and_module_entry_point(tmp_path: Path) -> None:
    from kolfeed import __version__

    out = kolfeed("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"kolfeed {__version__}"


def test_an_unknown_log_level_is_refused_with_the_choices(tmp_path: Path) -> None:
    code, out = run_serve("--runs", str(tmp_path), "--log-level", "verbose")
    assert code == 2 and "verbose" in out and "debug" in out and "Traceback" not in out


def test_shipped_configs_resolve_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/ranking") == REPO / "configs" / "ranking"
    assert resolve_config_path("configs/train/world_als.yaml").is_file()
    (tmp_path / "configs" / "ranking").mkdir(parents=True)  # a local copy wins over the shipped one
    assert resolve_config_path("configs/ranking") == Path("configs/ranking")
    assert resolve_config_path("configs/nothing") == Path("configs/nothing")


def test_train_config_loads_outside_the_repository(tmp_path: Path) -> None:
    out = kolfeed("train", "configs/train/world_als.yaml", "--set", "data.path=nowhere", cwd=tmp_path)
    assert "config file not found" not in out.stderr
    assert "nowhere" in out.stderr and out.returncode != 0 and "Traceback" not in out.stderr


def test_a_locked_event_log_is_one_line(tmp_path: Path) -> None:
    make_tiny_run(tmp_path / "runs" / "r1")
    log_dir = tmp_path / "log"
    holder = EventLog(log_dir)
    try:
        assert log_is_locked(log_dir)
        code, out = run_serve("--runs", str(tmp_path / "runs"), "--event-log-dir", str(log_dir))
        assert code == 1 and "is in use by another kolfeed serve" in out and "Traceback" not in out
    finally:
        holder.close()
    assert not log_is_locked(log_dir) and not log_is_locked(tmp_path / "missing")


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "kolfeed.test", "levelname": "INFO", "levelno": 20, "msg": msg})
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_time_level_logger_and_request_id() -> None:
    line = JsonFormatter().format(_record("hello %s", request_id="r1", status=200, color_message="\x1b[36m"))
    assert "\x1b" not in line
    obj = json.loads(line)
    assert obj["level"] == "INFO" and obj["logger"] == "kolfeed.test" and obj["request_id"] == "r1"
    assert obj["status"] == 200 and obj["ts"].endswith("Z") and "color_message" not in obj
    plain = ConsoleFormatter().format(_record("plain", request_id="r2"))
    assert "[r2]" in plain and "\x1b" not in plain


async def test_every_request_line_names_the_request_id_the_feed_returned(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = make_tiny_run(tmp_path / "runs" / "r1")
    settings = Settings(run_dir=run, runs_root=tmp_path / "runs", event_log_dir=None, experiments_dir=None)
    app = create_app(settings)
    configure_logging("json", "info")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                page = await client.get("/v1/feed", params={"user_id": 1})
                echoed = await client.get("/livez", headers={"x-request-id": "trace-7"})
    finally:
        logging.getLogger().handlers.clear()
    rid = page.json()["request_id"]
    assert page.headers["x-request-id"] == rid and echoed.headers["x-request-id"] == "trace-7"
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["logger"] == "kolfeed.access"]
    assert {x["request_id"] for x in access} >= {rid, "trace-7"}
    assert any(x["path"] == "/v1/feed" and x["status"] == 200 for x in access)


def test_progress_bars_stay_silent_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = io.StringIO()
    monkeypatch.setattr(sys, "stderr", sink)
    for _ in progress(range(3), desc="quiet"):
        pass
    assert sink.getvalue() == ""


def test_fresh_request_ids_are_unique_hex_and_differ_in_a_forked_process() -> None:
    """Ids are a per-process random prefix plus a counter (cheaper than a uuid4 per request): still
    32 hex characters, never repeated, and a forked worker draws its own prefix."""
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids[:100] + ids[-100:])
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply(new_request_id)
    assert child[:16] != ids[0][:16] and child not in set(ids)

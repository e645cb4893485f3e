"""The OpenAPI document is a contract: ``schemathesis run --checks all`` against a running
``kolfeed serve`` reports no failure (documented status codes and bodies, schema-valid requests
accepted, invalid ones refused, admin routes behind the bearer token), and ``/docs`` needs no CDN."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.ranking_fixtures import make_tiny_run
from tests.service_harness import free_port, serve_process

REPO = Path(__file__).resolve().parents[1]
TOKEN = "contract-admin-token"


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"service not ready: {log.read_text()[-3000:]}")


@pytest.mark.slow
def test_schemathesis_checks_all_pass_against_the_running_service(tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert cli is not None, "schemathesis is a dev dependency (pyproject [dev])"
    make_tiny_run(tmp_path / "runs" / "run1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KOLFEED_ADMIN_TOKEN": TOKEN}
    args = [sys.executable, "-m", "kolfeed", "serve", "--runs", str(tmp_path / "runs"), "--port", str(port)]
    args += ["--event-log-dir", str(tmp_path / "eventlog"), "--log-level", "warning"]
    log = tmp_path / "serve.log"
    with serve_process(args, env, log, cwd=tmp_path) as proc:
        _wait_ready(base, proc, log)
        with urllib.request.urlopen(f"{base}/docs", timeout=5) as resp:
            page = resp.read().decode()
        assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn." not in page
        with urllib.request.urlopen(f"{base}/docs-assets/swagger-ui-bundle.js", timeout=5) as resp:
            assert resp.status == 200
        cmd = [
            cli,
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "7",
        ]
        run = subprocess.run(
            [*cmd, "-H", f"Authorization: Bearer {TOKEN}"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout

"""The dashboard in a real headless browser (Debian's chromium) against a live uvicorn server.

Why a real browser: the page draws its charts with JavaScript; only running it proves the JSON the
service returns is what the page expects. The server runs in a thread on a free localhost port with a
tiny run and a hand-made event log (two experiments: one with a real CTR lift, one with a deliberately
broken sample ratio); chromium loads /dashboard, and we check the dumped DOM and a screenshot.
Chromium is not installed by the tests: without /usr/bin/chromium they skip (``make browser``), except
in CI (CI=true), where .ci/run installs it and a missing browser fails.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import uvicorn

from recsys.experiments.config import load_experiments
from serving.app import create_app
from tests.experiment_fixtures import experiment_events, experiment_settings, write_experiment
from tests.ranking_fixtures import copy_shipped_variants, make_tiny_run

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium at /usr/bin/chromium (make browser)",
    ),
]
CHARTS = ("exp-kolw-ctr", "exp-kolw-buy_conversion", "exp-skewed-ctr", "exp-skewed-buy_conversion")
WINDOW = (1280, 1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard")
    make_tiny_run(root / "runs" / "run1", version=1)
    ranking = copy_shipped_variants(root / "ranking")
    exp_dir = root / "experiments"
    write_experiment(exp_dir, "kolw", [("control", "default", 0.5), ("kol_heavy", "kol_heavy", 0.5)])
    write_experiment(exp_dir, "skewed", [("a", "default", 0.5), ("b", "no_kol", 0.5)])
    exps = load_experiments(exp_dir)
    events = experiment_events(
        exps["kolw"],
        n_users=500,
        days=4,
        ctr={"control": 0.10, "kol_heavy": 0.14},
        keep_share={"b": 0.6},
        keep_experiment=exps["skewed"],
    )
    pq.write_table(events, root / "events.parquet")
    settings = experiment_settings(
        root / "runs", ranking, experiments_dir=exp_dir, events_path=root / "events.parquet"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def chromium(user_data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data}",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        out = []
        for t, a in self.tags:
            if tag is not None and t != tag:
                continue
            if all(a.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(a)
        return out


def test_dashboard_renders_charts_tables_and_srm_banner(server_url: str, tmp_path: Path) -> None:
    done = chromium(tmp_path / "profile", "--dump-dom", f"{server_url}/dashboard")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    page = Elements()
    page.feed(dom)
    body = page.find("body")[0]
    assert body.get("data-loaded") == "true", dom[:2000]
    assert body.get("data-errors") == "0", dom[:4000]
    for chart in CHARTS:
        svgs = page.find("svg", data_chart=chart)
        assert len(svgs) == 1, chart
        assert svgs[0].get("data-rendered") == "true", chart
        assert int(svgs[0]["data-points"]) == 2 * 4, chart  # 2 arms x 4 days
    lines = page.find("path", data_line="control")
    assert len(lines) == 2 and all(a["d"].startswith("M") and a["d"].count("L") == 3 for a in lines)
    assert len(page.find("path", data_band="kol_heavy")) == 2
    # SRM banner only on the experiment whose arm b lost 40% of its users
    assert 'data-srm="warning"' in dom
    skewed_start = dom.index('data-experiment="skewed"')
    kolw_start = dom.index('data-experiment="kolw"')
    banner = dom.index('data-srm="warning"')
    assert skewed_start < banner and not (kolw_start < banner < skewed_start)
    assert "SAMPLE RATIO MISMATCH" in dom
    # per-arm tables and the KOL leaderboard
    assert len(page.find("tr", data_arm="kol_heavy")) == 1
    assert page.find("table", id="kol-table")[0].get("data-rendered") == "true"
    assert len(page.find("tr")) > 4 and len([a for a in page.find("tr") if "data-kol" in a]) == 4


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_dashboard_screenshot_is_a_real_picture(server_url: str, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    shot = tmp_path / "dashboard.png"
    done = chromium(
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        f"{server_url}/dashboard",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == WINDOW
    assert len(data) > 30_000
    pixels = np.asarray(mpimg.imread(shot))[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    # the arm colours of the charts are present (blue control line, orange treatment line)
    blue = np.all(np.abs(pixels - np.array([0x1F, 0x6F, 0xEB]) / 255) < 0.05, axis=-1).sum()
    orange = np.all(np.abs(pixels - np.array([0xE8, 0x59, 0x0C]) / 255) < 0.05, axis=-1).sum()
    assert blue > 200 and orange > 200, (blue, orange)

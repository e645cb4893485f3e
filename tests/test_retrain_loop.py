"""The loop an ML engineer runs every day, with real processes and a shop's string ids:
train → `kolfeed serve` on redis:// → a brand-new customer (a UUID) clicks and buys → retrain from
the service's event log → admin reload → that customer's feed comes from the model (ANN on their
new embedding, not the cold-start page) and leaves out what they bought."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.service_harness import TOKEN, auth, free_port, http_get, serve_process
from tests.string_worlds import LABEL_OF, stringify_world
from tests.world_fixtures import make_tiny_world

REPO = Path(__file__).resolve().parents[1]
NEW_USER = "0b6e3f5c-8c1d-4f4e-b2a7-5d9e1c3a7f20"
COLD_START_SOURCES = {"trending", "explore", "popular"}
MODEL_SOURCES = {"ann"}
"""Candidates only a user with an embedding gets (ANN on the user vector)."""


def kolfeed(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kolfeed.cli", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def train_run(world: Path, runs: Path, env: dict[str, str], *extra: str) -> Path:
    out = kolfeed(
        "train",
        "configs/train/world_als.yaml",
        "--set",
        f"data.path={world}",
        "--set",
        "model.params.factors=16",
        "--set",
        "model.params.iterations=6",
        *extra,
        "--out",
        str(runs),
        "--quiet",
        env=env,
    )
    return Path(out.strip().splitlines()[-1])


def taste_of_one_category(world: Path, n: int) -> list[str]:
    """The ``n`` most engaged-with items of the world's most common category (SKU labels)."""
    items = pq.read_table(world / "items.parquet")
    categories = Counter(items.column("category").to_pylist())
    category = categories.most_common(1)[0][0]
    in_category = {
        sku
        for sku, cat in zip(
            items.column("item_id").to_pylist(), items.column("category").to_pylist(), strict=True
        )
        if cat == category
    }
    events = pq.read_table(world / "split/train.parquet", columns=["item_id"]).column("item_id").to_pylist()
    counts = Counter(sku for sku in events if sku in in_category)
    return [str(sku) for sku, _ in counts.most_common(n)]


def feed(base: str, user: str) -> dict[str, Any]:
    status, page = http_get(f"{base}/v1/feed?user_id={urllib.parse.quote(user)}&limit=20")
    assert status == 200, page
    return page


def sources(page: dict[str, Any]) -> set[str]:
    return {entry["source"] for entry in page["items"]}


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "kolfeed serve never became ready"
        try:
            status, _ = http_get(f"{base}/readyz")
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.2)


@pytest.mark.redis
@pytest.mark.slow
def test_a_new_string_id_customer_gets_a_personal_feed_after_the_retrain_from_the_log(
    tmp_path: Path, redis_url: str
) -> None:
    make_tiny_world(tmp_path / "int-world", 7)
    world = stringify_world(tmp_path / "int-world", tmp_path / "shop-world")
    assert LABEL_OF["item"](1) == "SKU-000001"  # the world's items are SKUs, its users UUIDs
    runs, log_dir = tmp_path / "runs", tmp_path / "eventlog"
    env = {
        **os.environ,
        "KOLFEED_ADMIN_TOKEN": TOKEN,
        "KOLFEED_EVENT_LOG_DIR": str(log_dir),
        "PYTHONPATH": str(REPO),
    }
    first = train_run(world, runs, env)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "kolfeed.cli", "serve", "--run", str(first), "--runs", str(runs)]
    args += ["--store", redis_url, "--port", str(port)]
    with serve_process(args, env, tmp_path / "serve.log") as proc:
        wait_ready(base, proc, tmp_path / "serve.log")
        cold = feed(base, NEW_USER)
        assert cold["items"] and sources(cold) <= COLD_START_SOURCES, sources(cold)

        liked = taste_of_one_category(world, 8)
        bought = liked[0]
        events = [{"user_id": NEW_USER, "item_id": sku, "action": "click"} for sku in liked]
        events += [{"user_id": NEW_USER, "item_id": sku, "action": "cart"} for sku in liked[:3]]
        events.append({"user_id": NEW_USER, "item_id": bought, "action": "buy", "value": 19.9})
        status, body = http_get(f"{base}/v1/events", data=json.dumps({"events": events}).encode())
        assert status == 202, body
        before = feed(base, NEW_USER)
        assert not sources(before) & MODEL_SOURCES  # the served model does not know them yet

        second = train_run(
            world,
            runs,
            env,
            "--set",
            f"data.events_log={log_dir}",
            "--set",
            "export.refit_on_all_events=true",
        )
        metrics = json.loads((second / "metrics.json").read_text())
        assert metrics["data_log_new_users"] == 1
        assert metrics["data_log_events_kept"] == len(events)
        status, body = http_get(
            f"{base}/v1/admin/reload", headers=auth(), data=json.dumps({"run_dir": second.name}).encode()
        )
        assert status == 200, body

        after = feed(base, NEW_USER)
        assert after["model_version"] == 2
        assert sources(after) & MODEL_SOURCES, sources(after)  # personalised by the retrained model
        shown = [entry["item_id"] for entry in after["items"]]
        assert bought not in shown
        assert all(isinstance(sku, str) and sku.startswith("SKU-") for sku in shown)
        assert proc.poll() is None

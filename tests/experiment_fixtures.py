"""Experiment test data shared by the serving-experiments and dashboard tests: a known event log
per arm, experiment YAMLs, and settings for an app with experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from recsys.experiments.assignment import assign
from recsys.experiments.config import ExperimentConfig
from recsys.schema import EVENTS
from serving.settings import Settings

DAY = 86_400


START = 1_704_067_200  # 2024-01-01 UTC


KOLS = (10, 11, 12, 13)


def experiment_events(
    experiment: ExperimentConfig,
    *,
    n_users: int = 600,
    days: int = 5,
    seed: int = 0,
    ctr: dict[str, float] | None = None,
    buy_per_click: float = 0.3,
    keep_share: dict[str, float] | None = None,
    keep_experiment: ExperimentConfig | None = None,
    first_user: int = 1_000,
) -> pa.Table:
    """A plausible event log (``recsys.schema.EVENTS``) for users ``first_user..``: each user has one
    session a day of 6 impressions; clicks with the arm's CTR, buys a fraction of clicks, shares some
    clicks to a friend who may buy through the share (``request_id`` ``s<n>``). ``keep_share[arm]``
    keeps only that fraction of the users in that arm of ``keep_experiment`` (default: ``experiment``),
    to break the sample ratio on purpose."""
    rng = np.random.default_rng(seed)
    ctr = ctr or {}
    keep_share = keep_share or {}
    rows: dict[str, list[Any]] = {c.name: [] for c in EVENTS.columns}
    n_shares = 0
    n_requests = 0

    def add(ts: int, user: int, item: int, action: str, kol: int | None, **extra: Any) -> None:
        rows["ts"].append(ts)
        rows["user_id"].append(user)
        rows["item_id"].append(item)
        rows["action"].append(action)
        rows["post_id"].append(None if kol is None else 500 + item % 100)
        rows["kol_id"].append(kol)
        rows["to_user_id"].append(extra.get("to_user_id"))
        rows["request_id"].append(extra.get("request_id"))
        rows["value"].append(extra.get("value"))

    users = [u for u in range(first_user, first_user + n_users)]
    splitter = keep_experiment or experiment
    users = [u for u in users if rng.random() < keep_share.get(assign(u, splitter), 1.0)]
    for day in range(days):
        for u in users:
            arm = assign(u, experiment)
            p_click = ctr.get(arm, 0.1)
            ts = START + day * DAY + int(rng.integers(0, DAY - 600))
            req = f"r{n_requests}"
            n_requests += 1
            for _ in range(6):
                item = 1000 + int(rng.integers(0, 40))
                kol = KOLS[item % len(KOLS)]
                add(ts, u, item, "impression", kol, request_id=req)
                if rng.random() >= p_click:
                    continue
                add(ts + 5, u, item, "click", kol, request_id=req)
                if rng.random() < buy_per_click:
                    add(ts + 30, u, item, "buy", kol, request_id=req, value=float(10 + item % 7))
                if rng.random() < 0.2:
                    friend = users[int(rng.integers(0, len(users)))]
                    add(ts + 40, u, item, "share", kol, request_id=req, to_user_id=friend)
                    if rng.random() < 0.5:
                        add(ts + 90, friend, item, "buy", kol, request_id=f"s{n_shares}", value=20.0)
                    n_shares += 1
    arrays = [pa.array(rows[c.name], type=c.type) for c in EVENTS.columns]
    return pa.Table.from_arrays(arrays, names=[c.name for c in EVENTS.columns])


def write_experiment(directory: Path, name: str, arms_: list[tuple[str, str, float]], **extra: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        "name": name,
        "salt": f"{name}-salt",
        "arms": [{"name": a, "variant": v, "share": s} for a, v, s in arms_],
        **extra,
    }
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(body))


def experiment_settings(runs_root: Path, ranking_dir: Path, **changes: Any) -> Settings:
    data: dict[str, Any] = {
        "runs_root": runs_root,
        "ranking_dir": ranking_dir,
        "store_url": "memory://",
        "request_deadline_s": 5.0,
        "event_log_dir": runs_root.parent / "eventlog",  # never the repo's var/eventlog
    }
    data.update(changes)
    return Settings(**data)

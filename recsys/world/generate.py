"""Generate a world directory: static tables, ground truth, events (streamed day by day), split.

Why day-by-day: memory stays bounded by one day of events plus a small carry-over, so the
``medium``/``large`` presets (tens of millions of events) stream through ``ParquetWriter``.

Determinism: the static world uses ``default_rng([seed, 0])`` and day ``d`` uses
``default_rng([seed, 1, d])``; every ordering is an explicit stable sort, so the same seed gives
byte-identical files.

Event order and share numbering (how a share cascade is reconstructed from events alone):
- ``events.parquet`` is sorted by ``ts`` (ties: generation order) and each day's events form
  one row group; ``split/train.parquet`` + ``split/test.parquet`` are the same rows in the same order.
- Feed impressions and reactions to them carry ``request_id = "r<n>"`` (n = global feed session).
- Share events are numbered 0, 1, 2, … in the order they appear in ``events.parquet``. A share event
  carries the sharer's own ``request_id`` and ``to_user_id`` (the friend). The friend's impression of
  the shared post and every reaction to it carry ``request_id = "s<n>"`` (n = that share's number)
  and the original ``post_id``/``kol_id``.
- So depth is recursive: events with ``r…`` are depth 0; events with ``s<n>`` have depth
  1 + depth of share number n. A share's number is always smaller than any reference to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.progress import progress as progress_bar
from recsys.schema import CATEGORIES, EVENTS
from recsys.world import priors
from recsys.world.config import DAY, GENERATOR_VERSION, WorldConfig, WorldError
from recsys.world.entities import build_static
from recsys.world.event_simulator import A_SHARE, REQ_SHARE, EventChunk, EventSimulator
from recsys.world.split import SplitWriter, cut_timestamp
from recsys.world.truth import TruthParams
from recsys.world.write import open_writer, static_tables, write_table

WORLD_FILE = "world.json"
TABLE_FILES = ("users", "items", "kols", "posts", "follows", "friends", "events")


@dataclass
class GenerationReport:
    counts: dict[str, int]
    phases: dict[str, float] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)


class _ShareRanks:
    """Growable map from a share's generation id to its rank in the events file."""

    def __init__(self) -> None:
        self.rank = np.full(1024, -1, dtype=np.int64)
        self.written = 0

    def assign(self, gids: np.ndarray) -> None:
        if gids.size == 0:
            return
        need = int(gids.max()) + 1
        if need > self.rank.shape[0]:
            grown = np.full(max(need, 2 * self.rank.shape[0]), -1, dtype=np.int64)
            grown[: self.rank.shape[0]] = self.rank
            self.rank = grown
        self.rank[gids] = self.written + np.arange(gids.shape[0], dtype=np.int64)
        self.written += gids.shape[0]

    def lookup(self, gids: np.ndarray) -> np.ndarray:
        ranks = self.rank[gids]
        if ranks.size and int(ranks.min()) < 0:  # a share received before it was written: a bug
            raise WorldError("internal error: share referenced before it was written")
        return ranks


def generate_world(
    cfg: WorldConfig,
    seed: int,
    out: str | Path,
    scale: str = "custom",
    params: TruthParams | None = None,
    progress: bool = True,
) -> GenerationReport:
    """Write a complete world into ``out`` (created if missing; existing world files are replaced)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorldError(f"output path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    params = params or TruthParams()
    phases: dict[str, float] = {}
    t0 = time.perf_counter()

    static = build_static(cfg, np.random.default_rng([seed, 0]), params)
    phases["entities"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    counts: dict[str, int] = {}
    for name, table in static_tables(static).items():
        write_table(out / f"{name}.parquet", table)
        counts[name] = table.num_rows
    static.truth.save(out)
    phases["write_static"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    sim = EventSimulator(cfg, static)
    cut_ts = cut_timestamp(cfg)
    ranks = _ShareRanks()
    writer = open_writer(out / "events.parquet", EVENTS)
    split = SplitWriter(out, cut_ts)
    n_events = 0
    action_counts = np.zeros(8, dtype=np.int64)
    ts_min, ts_max = None, None
    carry = EventChunk.empty()
    bar = progress_bar(total=cfg.days, desc="world: days", unit="day", enabled=progress)
    try:
        for d in range(cfg.days):
            chunk = EventChunk.concat([carry, sim.day(d, np.random.default_rng([seed, 1, d]))])
            chunk = chunk.take(np.lexsort((np.arange(len(chunk)), chunk.ts)))
            if d < cfg.days - 1:
                k = int(np.searchsorted(chunk.ts, cfg.start_ts + (d + 1) * DAY, side="left"))
                part, carry = chunk.take(slice(0, k)), chunk.take(slice(k, None))
            else:
                part, carry = chunk, EventChunk.empty()
            if len(part):
                ranks.assign(part.share_gid[part.action == A_SHARE])
                received = part.req_kind == REQ_SHARE
                part.req_num = part.req_num.copy()
                part.req_num[received] = ranks.lookup(part.req_num[received])
                table = part.to_events_table()
                writer.write_table(table)
                split.write(table, part.ts)
                n_events += len(part)
                action_counts += np.bincount(part.action, minlength=8)[:8]
                ts_min = int(part.ts[0]) if ts_min is None else ts_min
                ts_max = int(part.ts[-1])
            bar.update(1)
            bar.set_postfix(events=n_events)
    finally:
        bar.close()
        writer.close()
        split_info = split.close()
    counts["events"] = n_events
    phases["events"] = time.perf_counter() - t2

    from recsys.schema import ACTION_NAMES

    meta: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "config": cfg.model_dump(),
        "counts": counts,
        "action_counts": {a: int(c) for a, c in zip(ACTION_NAMES, action_counts, strict=True)},
        "categories": list(CATEGORIES),
        "segments": list(priors.SEGMENT_NAMES),
        "time_range": {
            "start_ts": cfg.start_ts,
            "end_ts": cfg.start_ts + cfg.days * DAY,
            "first_event_ts": ts_min,
            "last_event_ts": ts_max,
        },
        "split": split_info,
        "ids": "dense: user/item/kol/post ids are 0..n-1 and index the arrays under truth/",
        "request_id": "r<n>: feed session n; s<n>: reached via share event number n (file order, from 0)",
    }
    (out / WORLD_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return GenerationReport(counts=counts, phases=phases, split=split_info)

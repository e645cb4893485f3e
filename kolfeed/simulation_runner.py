"""Drive a simulation through the production feed path: store → UserContext → FeedRanker → events → store.

Why here and not in ``recsys.simulate``: this is the one place that needs the feature store
(``features``), which the pure ``recsys`` package must not import. Everything the ground truth decides
lives in :mod:`recsys.simulate`; this module only does what the web service does per request — read
the user's live state, trending and friends' purchases from the store, rank with the arm's variant,
and record what the user did — then hands the event log to the experiment readout verbatim.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.base import FeatureStore, StoreEvent
from features.factory import open_store
from recsys.event_columns import EventColumns
from recsys.experiments.assignment import arm_index_many
from recsys.experiments.config import ExperimentConfig
from recsys.experiments.readout import ExperimentReport, experiment_report
from recsys.progress import progress as progress_bar
from recsys.ranking.feed import FeedRanker
from recsys.ranking.feed_model import FeedModel
from recsys.ranking.variants import RankingVariant
from recsys.schema import ACTION_NAMES
from recsys.simulate.config import SimConfig, SimulationError
from recsys.simulate.engine import Page, Simulation
from recsys.simulate.schedule import sample_users
from recsys.world.config import DAY
from recsys.world.event_simulator import EventChunk
from recsys.world.truth import GroundTruth
from serving.feed_service import context_from_state

DEFAULT_TRAIN_CONFIG = Path("configs/train/world_als.yaml")  # best on worlds (kolfeed bench train)


@dataclass
class SimulationResult:
    report: ExperimentReport
    events: pa.Table
    meta: dict[str, Any]


def store_events(ev: EventChunk, model: FeedModel) -> list[StoreEvent]:
    """Columnar events → the store's event objects (what the service's POST /v1/events produces)."""
    cats = model.item_categories(ev.item_id)
    names = ACTION_NAMES
    out = []
    for ts, u, i, a, p, k, to, v, cat in zip(
        ev.ts.tolist(),
        ev.user_id.tolist(),
        ev.item_id.tolist(),
        ev.action.tolist(),
        ev.post_id.tolist(),
        ev.kol_id.tolist(),
        ev.to_user_id.tolist(),
        ev.value.tolist(),
        cats,
        strict=True,
    ):
        out.append(
            StoreEvent(
                ts=float(ts),
                user_id=u,
                item_id=i,
                action=names[a],
                kol_id=k if k >= 0 else None,
                post_id=p if p >= 0 else None,
                to_user_id=to if to >= 0 else None,
                category=cat,
                value=0.0 if math.isnan(v) else v,
            )
        )
    return out


@contextmanager
def _faiss_single_thread() -> Any:
    """One FAISS thread per search: single-query searches on a busy machine are ~6x faster than with
    OpenMP's thread team spinning up for each request."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def world_start_ts(world_dir: Path) -> int:
    """Midnight after the world's last event: simulated days follow the logged history."""
    meta = world_dir / "world.json"
    last: int | None = None
    if meta.is_file():
        try:
            last = int(json.loads(meta.read_text())["time_range"]["last_event_ts"])
        except (KeyError, ValueError, TypeError):
            last = None
    if last is None:
        path = world_dir / "events.parquet"
        if not path.is_file():
            raise SimulationError(f"{world_dir}: no world.json or events.parquet (not a world directory)")
        ts = pq.read_table(path, columns=["ts"]).column("ts")
        last = int(pc.max(ts).as_py() or 0)
    return (last // DAY + 1) * DAY


def _history(world_dir: Path, users: np.ndarray) -> tuple[EventChunk, np.ndarray, np.ndarray]:
    """(the sampled users' logged events, all logged buyers, their items)."""
    path = world_dir / "events.parquet"
    if not path.is_file():
        raise SimulationError(f"{world_dir}: missing events.parquet")
    cols = ["ts", "user_id", "item_id", "action", "post_id", "kol_id", "to_user_id", "value"]
    t = pq.read_table(path, columns=cols)
    action = t.column("action")
    buy = pc.equal(action, "buy")
    buyers = t.column("user_id").filter(buy).to_numpy()
    bought = t.column("item_id").filter(buy).to_numpy()
    mine = t.filter(pc.is_in(t.column("user_id"), pa.array(users, pa.int64())))
    logged = EventColumns.from_table(mine, strict=False)
    n = len(logged)
    chunk = EventChunk(
        **vars(logged),
        req_kind=np.zeros(n, dtype=np.int8),
        req_num=np.zeros(n, dtype=np.int64),
        share_gid=np.full(n, -1, dtype=np.int64),
    )
    return chunk, np.asarray(buyers, np.int64), np.asarray(bought, np.int64)


def train_default_run(world_dir: Path, out_dir: Path, config: Path = DEFAULT_TRAIN_CONFIG) -> Path:
    """Fit the default train config on the world (its train split) into ``out_dir/runs``."""
    from training.config import load_config
    from training.run import train

    cfg = load_config(config, [f"data.path={world_dir}"])
    return train(cfg, out_dir / "runs").run_dir


async def _simulate(
    store: FeatureStore,
    sim: Simulation,
    model: FeedModel,
    arm_variants: Sequence[RankingVariant],
    cfg: SimConfig,
    warm: EventChunk | None,
    progress: bool,
) -> None:
    ranker = FeedRanker(model)
    if warm is not None and len(warm):
        order = np.argsort(warm.ts, kind="stable")
        for lo in range(0, len(order), 50_000):
            await store.record_events(store_events(warm.take(order[lo : lo + 50_000]), model))
    bar = progress_bar(desc="simulate", unit="session", enabled=progress)
    friends_cache: dict[int, list[int]] = {}
    for step in sim.steps():
        now = float(step.ts[0])
        users = step.user.tolist()
        states = await store.user_states(users, now=now)
        trending = await store.trending(cfg.trending_k, now=now) if cfg.trending_k > 0 else []
        per_user_friends = []
        for u in users:
            if u not in friends_cache:
                friends_cache[u] = model.friend_ids(u, cfg.friends_limit)
            per_user_friends.append(friends_cache[u])
        all_friends = sorted({f for fs in per_user_friends for f in fs})
        bought_by: dict[int, set[int]] = {}
        if all_friends:
            for f, bought in zip(all_friends, await store.bought_by(all_friends), strict=True):
                bought_by[f] = bought
        pages: list[Page] = []
        for j, (u, state) in enumerate(zip(users, states, strict=True)):
            counts: dict[int, int] = {}
            for f in per_user_friends[j]:
                for item in bought_by.get(f, ()):
                    counts[item] = counts.get(item, 0) + 1
            entries = ranker.rank(
                context_from_state(u, state),
                arm_variants[int(step.arm[j])],
                cfg.feed_size,
                exclude=step.shared_items[j],
                trending=trending or None,
                friends_bought=counts,
                now=float(step.ts[j]),
            )
            pages.append(
                (
                    np.array([e.item_id for e in entries], dtype=np.int64),
                    np.array([-1 if e.post_id is None else e.post_id for e in entries], dtype=np.int64),
                    np.array([-1 if e.kol_id is None else e.kol_id for e in entries], dtype=np.int64),
                )
            )
        events = sim.apply(step, pages)
        await store.record_events(store_events(events, model))
        bar.update(len(users))
    bar.close()


def _check_ids(truth: GroundTruth, model: FeedModel) -> None:
    """The run must speak the world's ids (dense 0..n-1), else the ground truth would judge other items."""
    ids = model.items.ids
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= truth.n_items):
        raise SimulationError(
            f"run items ({len(ids)}, ids {int(ids.min())}..{int(ids.max())}) are not items of this world "
            f"({truth.n_items} items); train the run on this world"
        )
    kols = model.kols.ids
    if len(kols) and int(kols.max()) >= truth.n_kols:
        raise SimulationError(f"run KOL id {int(kols.max())} is not a KOL of this world ({truth.n_kols})")


def run_simulation(
    world_dir: Path,
    experiment: ExperimentConfig,
    variants: dict[str, RankingVariant],
    model: FeedModel,
    cfg: SimConfig,
    truth: GroundTruth | None = None,
    store_url: str = "memory://",
    progress: bool = True,
    store_factory: Callable[[str], FeatureStore] | None = None,
) -> SimulationResult:
    """Simulate ``experiment`` on the world and return the readout, the event log and run facts."""
    t0 = time.perf_counter()
    world_dir = Path(world_dir)
    truth = GroundTruth.load(world_dir) if truth is None else truth
    _check_ids(truth, model)
    missing = [a.variant for a in experiment.arms if a.variant not in variants]
    if missing:
        raise SimulationError(
            f"experiment {experiment.name!r} names unknown ranking variant(s) {', '.join(missing)}; "
            f"known: {', '.join(sorted(variants))}"
        )
    arm_variants = [variants[a.variant] for a in experiment.arms]
    start = world_start_ts(world_dir)
    rng = np.random.default_rng([cfg.seed, 1])
    users = sample_users(rng, truth.n_users, cfg.users, cfg.sample, truth.friend_indptr, truth.friend_indices)
    user_arm = arm_index_many(users, experiment)
    sim = Simulation(truth, cfg, users, user_arm, start)
    warm, buyers, bought = _history(world_dir, users)
    sim.behaviour.add_buys(buyers, bought)
    store = (store_factory or open_store)(store_url)

    async def go() -> None:
        try:
            await store.clear()
            with _faiss_single_thread():
                await _simulate(
                    store, sim, model, arm_variants, cfg, warm if cfg.warm_store else None, progress
                )
        finally:
            await store.close()

    asyncio.run(go())
    table = sim.log.table()
    window = experiment.model_copy(
        update={
            "start": datetime.fromtimestamp(start, UTC),
            "stop": datetime.fromtimestamp(sim.end_ts + DAY, UTC),
        }
    )
    report = experiment_report(table, window)
    wall = time.perf_counter() - t0
    meta = {
        "world": str(world_dir),
        "run_dir": None if model.run_dir is None else str(model.run_dir),
        "experiment": experiment.name,
        "arms": {a.name: a.variant for a in experiment.arms},
        "config": cfg.model_dump(),
        "start_ts": start,
        "end_ts": sim.end_ts,
        "users_sampled": len(users),
        "users_per_arm": {a.name: int((user_arm == k).sum()) for k, a in enumerate(experiment.arms)},
        "events": table.num_rows,
        "stats": asdict(sim.stats),
        "wall_seconds": round(wall, 2),
        "note": "readout window = the simulated days (plus one day for late reactions), "
        "whatever the experiment's calendar window",
    }
    return SimulationResult(report=report, events=table, meta=meta)


def write_result(result: SimulationResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(result.events, out_dir / "events.parquet")
    (out_dir / "readout.json").write_text(json.dumps(result.report.model_dump(mode="json"), indent=2) + "\n")
    (out_dir / "simulation.json").write_text(json.dumps(result.meta, indent=2, sort_keys=True) + "\n")


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def format_readout(report: ExperimentReport) -> str:
    """A short plain-text table: one row per arm, then each treatment's lifts with p-values."""
    lines = [
        f"experiment {report.experiment} (control: {report.control}); {report.srm.message}",
        f"{'arm':<16}{'variant':<14}{'users':>7}{'impr':>9}{'ctr':>9}{'share':>9}{'buy_conv':>10}{'gmv/user':>10}",
    ]
    for a in report.arms:
        gmv = a.gmv_per_user.value
        lines.append(
            f"{a.name:<16}{a.variant:<14}{a.users:>7}{a.impressions:>9}{_pct(a.ctr.value):>9}"
            f"{_pct(a.share_rate.value):>9}{_pct(a.buy_conversion.value):>10}"
            f"{'-' if gmv is None else f'{gmv:.2f}':>10}"
        )
    for a in report.arms:
        for metric, c in a.vs_control.items():
            p = "-" if c.p_value is None else f"{c.p_value:.3g}"
            lines.append(
                f"  {a.name} vs {report.control} {metric:<15} lift {_pct(c.lift, 1):>8} "
                f"[{_pct(c.lift_ci_low, 1)}, {_pct(c.lift_ci_high, 1)}] p={p}"
                + ("  *significant*" if c.significant else "")
            )
    return "\n".join(lines)

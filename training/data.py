"""Load a run's data and build everything the model and the export need (shared by train and eval).

Why one function: ``kolfeed eval`` must rebuild exactly the matrices ``kolfeed train`` evaluated on,
so both go through :func:`prepare`, which is deterministic for a given config and data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys import graphs as g
from recsys.interactions import Interactions
from training.config import ConfigError, TrainConfig

SMALL_FILE_BYTES = 16 << 20
"""Files up to this size are fingerprinted by content; larger ones by name, size and mtime."""


@dataclass
class WorldGraphs:
    """The social side of a world, in dense index space (users/items as in ``Interactions``)."""

    kol_ids: np.ndarray
    follows: sp.csr_matrix  # users x kols, binary
    engagement: sp.csr_matrix  # users x kols, signed, recency-decayed
    friends: sp.csr_matrix  # users x users, symmetric binary
    friend_buys: sp.csr_matrix  # users x kols
    share: sp.csr_matrix  # users x users share counts
    behaviours: dict[str, sp.csr_matrix]  # train click/share/buy graphs
    categories: list[str]
    kol_fit: np.ndarray  # kols x categories
    post_kol: np.ndarray  # dense kol index per post
    post_item: np.ndarray  # dense item index per post
    post_engagement: np.ndarray  # positive weighted engagement per post
    tables: dict[str, pa.Table] = field(default_factory=dict)


@dataclass
class Prepared:
    interactions: Interactions
    seen: sp.csr_matrix
    """Binary users x items of every positive training interaction: the evaluation mask, the same for
    every graph variant so that variants are compared on identical held-out sets."""
    world: WorldGraphs | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def data_fingerprint(path: Path, events_log: str | None = None) -> str:
    """sha256 over the input files: content for small files, name+size+mtime for large ones."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    if events_log is not None:  # the service's log: its segments count as input too
        h.update(_event_log_fingerprint(Path(events_log)))
    for f in files:
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        st = f.stat()
        h.update(rel.encode() + b"\0" + str(st.st_size).encode() + b"\0")
        if st.st_size <= SMALL_FILE_BYTES:
            h.update(hashlib.sha256(f.read_bytes()).digest())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()


def _event_log_fingerprint(log: Path) -> bytes:
    """Segment names and sizes of every log under ``log`` (a plain log, or worker-<i> sub-logs).

    A plain log hashes as it always did (segment names only), so runs fingerprinted before worker
    logs existed still match; a worker sub-log's segments are named ``worker-<i>/events-….log``.
    A missing directory contributes nothing (loading it fails first, with a clear message)."""
    from features.eventlog import list_segments, log_dirs

    if not log.is_dir():
        return b""
    out = []
    for d in log_dirs(log):
        prefix = "" if d == log else f"{d.name}/"
        for seg in sorted(list_segments(d), key=lambda s: s.path.name):
            out.append(
                b"log\0" + (prefix + seg.path.name).encode() + b"\0" + str(seg.path.stat().st_size).encode()
            )
    return b"".join(out)


def _ids(table: pa.Table, column: str) -> np.ndarray:
    arr = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.unique(arr)


def _pairs(table: pa.Table, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(table.column(a).to_numpy(zero_copy_only=False), dtype=np.int64),
        np.asarray(table.column(b).to_numpy(zero_copy_only=False), dtype=np.int64),
    )


def _with_event_log(history: pa.Table, log_dir: Path, test_fraction: float) -> tuple[pa.Table, pa.Table]:
    """World history + the service's logged events (every worker's sub-log, if it has several),
    split chronologically at the time quantile."""
    import pyarrow.compute as pc

    from features.eventlog import EventLogError, load_event_log
    from recsys.io.errors import DataError

    if not log_dir.is_dir():
        raise DataError(f"{log_dir}: data.events_log is not a directory")
    try:
        logged = load_event_log(log_dir)
    except EventLogError as exc:  # corrupt or mixed-layout log: one line, not a traceback
        raise DataError(f"data.events_log: {exc}") from None
    events = pa.concat_tables([history.select(logged.column_names).cast(logged.schema), logged])
    if len(events) < 2:
        raise DataError(f"{log_dir}: too few events to split ({len(events)})")
    ts = events.column("ts").to_numpy()
    cut = int(np.quantile(ts, 1.0 - test_fraction))
    events = events.take(pc.sort_indices(events, sort_keys=[("ts", "ascending")]))
    is_test = pc.greater_equal(events.column("ts"), cut)
    return events.filter(pc.invert(is_test)), events.filter(is_test)


def prepare_world(cfg: TrainConfig) -> Prepared:
    from recsys.io.errors import DataError
    from recsys.io.world import load_world

    world = load_world(Path(cfg.data.path))
    if cfg.data.events_log is not None:
        world.train_events, world.test_events = _with_event_log(
            world.events, Path(cfg.data.events_log), cfg.data.test_fraction
        )
    if world.train_events is None or world.test_events is None:
        raise DataError(f"{cfg.data.path}: world has no split/{{train,test}} (needed to train and evaluate)")
    users = world.users
    items = world.items
    kols = world.kols
    posts = world.posts
    follows_t = world.follows
    friends_t = world.friends
    train_t = world.train_events
    test_t = world.test_events

    user_ids = _ids(users, "user_id")
    item_ids = _ids(items, "item_id")
    kol_ids = _ids(kols, "kol_id")
    train_ev = g.EventArrays.from_table(train_t)
    test_ev = g.EventArrays.from_table(test_t)
    now = float(train_ev.ts.max()) if len(train_ev) else 0.0
    gc = cfg.graphs

    conf = g.confidence_matrix(
        train_ev, user_ids, item_ids, gc.weights, gc.behaviours, gc.half_life_days, now
    )
    seen = g.positive_matrix(train_ev, user_ids, item_ids)
    test = g.drop_seen(g.positive_matrix(test_ev, user_ids, item_ids), seen)
    extra: dict[str, sp.csr_matrix] = {}
    if cfg.eval.per_behaviour:
        for action in cfg.eval.behaviours:
            held = g.behaviour_matrix(test_ev, user_ids, item_ids, action)
            extra[action] = g.drop_seen(held, seen)
    inter = Interactions(train=conf, test=test, user_ids=user_ids, item_ids=item_ids, extra_test=extra)

    n_u, n_k = len(user_ids), len(kol_ids)
    fu, fk = _pairs(follows_t, "user_id", "kol_id")
    follows = sp.csr_matrix(
        (
            np.ones(len(fu), dtype=np.float32),
            (g.index_of(user_ids, fu, "follows.user_id"), g.index_of(kol_ids, fk, "follows.kol_id")),
        ),
        shape=(n_u, n_k),
    )
    follows.data[:] = 1.0
    a, b = _pairs(friends_t, "user_id", "friend_id")
    ia, ib = g.index_of(user_ids, a, "friends.user_id"), g.index_of(user_ids, b, "friends.friend_id")
    friends = sp.csr_matrix(
        (np.ones(2 * len(ia), dtype=np.float32), (np.concatenate([ia, ib]), np.concatenate([ib, ia]))),
        shape=(n_u, n_u),
    )
    friends.data[:] = 1.0
    from recsys.affinity import friend_buys_via_kol

    engagement = g.user_kol_engagement(
        train_ev, user_ids, kol_ids, gc.weights, gc.engagement_half_life_days, now
    )
    buys_via_kol = g.user_kol_action(train_ev, user_ids, kol_ids, "buy")
    item_cat_col = items.column("category").to_numpy(zero_copy_only=False)
    item_order = np.argsort(
        np.asarray(items.column("item_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    )
    item_category = np.asarray(item_cat_col)[item_order]
    from recsys.schema import CATEGORIES

    categories = list(CATEGORIES) + sorted({str(c) for c in item_category} - set(CATEGORIES))
    kol_fit = g.kol_category_fit(
        train_ev, kol_ids, item_ids, item_category, categories, gc.weights, gc.fit_smoothing
    )

    post_ids_raw, post_kol_raw = _pairs(posts, "post_id", "kol_id")
    _, post_item_raw = _pairs(posts, "post_id", "item_id")
    post_kol = g.index_of(kol_ids, post_kol_raw, "posts.kol_id")
    post_item = g.index_of(item_ids, post_item_raw, "posts.item_id")
    post_engagement = _post_engagement(train_ev, post_ids_raw, gc.weights)

    wg = WorldGraphs(
        kol_ids=kol_ids,
        follows=follows,
        engagement=engagement,
        friends=friends,
        friend_buys=friend_buys_via_kol(friends, buys_via_kol),
        share=g.share_graph(train_ev, user_ids),
        behaviours=g.behaviour_graphs(train_ev, user_ids, item_ids),
        categories=categories,
        kol_fit=kol_fit,
        post_kol=post_kol,
        post_item=post_item,
        post_engagement=post_engagement,
        tables={"items": items, "kols": kols, "posts": posts, "follows": follows_t, "friends": friends_t},
    )
    stats = {
        "n_users": n_u,
        "n_items": len(item_ids),
        "n_kols": n_k,
        "n_train_events": len(train_ev),
        "n_test_events": len(test_ev),
        "train_nnz": int(conf.nnz),
        "test_nnz": int(test.nnz),
        **{f"test_{k}_nnz": int(v.nnz) for k, v in extra.items()},
    }
    return Prepared(interactions=inter, seen=seen, world=wg, stats=stats)


def _post_engagement(ev: g.EventArrays, post_ids: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """Positive action-weighted engagement per post (events whose post is unknown are ignored)."""
    w = g.action_weight_vector(weights)[ev.action]
    keep = (w > 0) & (ev.post_id != -1)
    order = np.argsort(post_ids)
    sorted_ids = post_ids[order]
    out = np.zeros(len(post_ids), dtype=np.float64)
    if len(sorted_ids) == 0:
        return out
    pos = np.clip(np.searchsorted(sorted_ids, ev.post_id[keep]), 0, len(sorted_ids) - 1)
    hit = sorted_ids[pos] == ev.post_id[keep]
    np.add.at(out, order[pos[hit]], w[keep][hit])
    return out


def prepare_dataset(cfg: TrainConfig) -> Prepared:
    from recsys.datasets import load_dataset
    from recsys.io.errors import DatasetError

    try:
        inter = load_dataset(Path(cfg.data.path), cfg.data.format, cfg.data.options)
    except DatasetError as exc:
        if "has no option" in str(exc):
            raise ConfigError(f"data.options: {exc}") from None
        raise
    seen = inter.train.tocsr(copy=True).astype(np.float32)
    seen.data[:] = 1.0
    seen.eliminate_zeros()
    stats = {
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "train_nnz": int(inter.train.nnz),
        "test_nnz": int(inter.test.nnz),
    }
    return Prepared(interactions=inter, seen=seen, world=None, stats=stats)


def prepare(cfg: TrainConfig) -> Prepared:
    if not Path(cfg.data.path).exists():
        from recsys.io.errors import DataError

        raise DataError(f"{cfg.data.path}: data path does not exist (data.path)")
    return prepare_world(cfg) if cfg.data.format == "world" else prepare_dataset(cfg)

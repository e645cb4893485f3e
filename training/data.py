"""Load a run's data and build everything the model and the export need (shared by train and eval).

Why one function: ``kolfeed eval`` must rebuild exactly the matrices ``kolfeed train`` evaluated on,
so both go through :func:`prepare`, which is deterministic for a given config and data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys import graphs as g
from recsys.event_columns import EventColumns
from recsys.id_labels import IdLabels
from recsys.interactions import Interactions
from recsys.io.report import LoadReport, RowsReport
from recsys.schema import NO_ID
from training.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from recsys.io.world import World

if TYPE_CHECKING:
    from features.event_export import ExportReadReport

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
    labels: IdLabels = field(default_factory=IdLabels)
    """Text of the hashed (string) ids of the data, per kind; the run directory keeps those it maps."""
    log_intake: LogIntake | None = None
    """What was taken from ``data.events_log`` (None without one)."""
    rows: RowsReport | None = None
    """Rows read, kept and skipped per table and reason (worlds; None for benchmark formats)."""


ITEM_NOT_IN_CATALOGUE = "item not in the catalogue"
KOL_NOT_IN_CREATORS = "kol not in the creators table (kept without it)"


@dataclass
class LogIntake:
    """What a retrain took from the service's event log (``data.events_log``).

    The log holds what the live service saw since the world was exported, so it names users and
    items the world's tables do not have yet. The rule:

    - users first seen in the log (as ``user_id`` or as a share's ``to_user_id``) join the user map:
      they are the new customers the retrain is for;
    - events on items missing from the catalogue are skipped and counted: such an item has no
      category, price, stock or post to rank and explain it with; its events count once the
      catalogue lists it (they stay in the log);
    - a creator missing from the creators table is dropped from the event (the event is kept).
    """

    read: int
    kept: int
    skipped: dict[str, int]
    changed: dict[str, int]
    new_users: np.ndarray
    source: str = "event log"
    """``event log`` (``data.events_log``) or ``event export`` (``data.events_path``)."""

    def stats(self) -> dict[str, int]:
        """Flat counts for the run's data stats (``metrics.json``, ``train.log``)."""
        return {
            "log_events_read": self.read,
            "log_events_kept": self.kept,
            "log_new_users": len(self.new_users),
            "log_skipped_unknown_item": self.skipped.get(ITEM_NOT_IN_CATALOGUE, 0),
            "log_unknown_kol_dropped": self.changed.get(KOL_NOT_IN_CREATORS, 0),
        }

    def summary(self) -> str:
        parts = [f"{self.kept:,} of {self.read:,} logged events kept", f"{len(self.new_users):,} new users"]
        parts += [f"skipped {n:,} ({reason})" for reason, n in self.skipped.items() if n]
        parts += [f"{n:,} events: {reason}" for reason, n in self.changed.items() if n]
        return f"{self.source}: " + ", ".join(parts)


def take_in_log(
    logged: pa.Table, user_ids: np.ndarray, item_ids: np.ndarray, kol_ids: np.ndarray
) -> tuple[pa.Table, LogIntake]:
    """Apply the :class:`LogIntake` rule to logged events against the world's id maps."""
    import pyarrow.compute as pc

    items = np.asarray(logged.column("item_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    known_item = np.isin(items, item_ids)
    kept = logged.filter(pa.array(known_item))
    kol = kept.column("kol_id")
    kol_keys = np.asarray(pc.fill_null(kol, NO_ID).to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown_kol = (kol_keys != NO_ID) & ~np.isin(kol_keys, kol_ids)
    if unknown_kol.any():
        index = kept.schema.get_field_index("kol_id")
        cleared = pc.if_else(pa.array(unknown_kol), pa.scalar(None, kol.type), kol)
        kept = kept.set_column(index, kept.schema.field(index), cleared)
    seen_users = [np.asarray(kept.column("user_id").to_numpy(zero_copy_only=False), dtype=np.int64)]
    to_user = kept.column("to_user_id").drop_null()
    seen_users.append(np.asarray(to_user.to_numpy(zero_copy_only=False), dtype=np.int64))
    new_users = np.setdiff1d(np.concatenate(seen_users), user_ids)
    intake = LogIntake(
        read=logged.num_rows,
        kept=kept.num_rows,
        skipped={ITEM_NOT_IN_CATALOGUE: int((~known_item).sum())},
        changed={KOL_NOT_IN_CREATORS: int(unknown_kol.sum())},
        new_users=new_users,
    )
    return kept, intake


def data_fingerprint(path: Path, events_log: str | None = None, events_path: str | None = None) -> str:
    """sha256 over the input files: content for small files, name+size+mtime for large ones."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    if events_log is not None:  # the service's log: its segments count as input too
        h.update(_event_log_fingerprint(Path(events_log)))
    if events_path is not None:  # an event export: its files (named by log and seq range) and sizes
        h.update(_event_export_fingerprint(Path(events_path)))
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


def _event_export_fingerprint(export: Path) -> bytes:
    """Names and sizes of an export's files (a file's name says which log and seqs it holds)."""
    from features.event_export import ExportError, export_files

    try:
        files = export_files(export)
    except ExportError:
        return b""  # loading it fails first, with a clear message
    return b"".join(
        b"export\0" + f.relative_to(export).as_posix().encode() + b"\0" + str(f.stat().st_size).encode()
        for f in files
    )


def _ids(table: pa.Table, column: str) -> np.ndarray:
    arr = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.unique(arr)


def _pairs(table: pa.Table, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(table.column(a).to_numpy(zero_copy_only=False), dtype=np.int64),
        np.asarray(table.column(b).to_numpy(zero_copy_only=False), dtype=np.int64),
    )


def _with_event_log(
    history: pa.Table, logged: pa.Table, log_dir: Path, test_fraction: float
) -> tuple[pa.Table, pa.Table]:
    """World history + the service's logged events (already taken in, see :class:`LogIntake`),
    split chronologically at the time quantile."""
    import pyarrow.compute as pc

    from recsys.io.errors import DataError

    events = pa.concat_tables([history.select(logged.column_names).cast(logged.schema), logged])
    if len(events) < 2:
        raise DataError(f"{log_dir}: too few events to split ({len(events)})")
    ts = events.column("ts").to_numpy()
    cut = int(np.quantile(ts, 1.0 - test_fraction))
    events = events.take(pc.sort_indices(events, sort_keys=[("ts", "ascending")]))
    is_test = pc.greater_equal(events.column("ts"), cut)
    return events.filter(pc.invert(is_test)), events.filter(is_test)


def _read_event_log(log_dir: Path) -> pa.Table:
    from features.eventlog import EventLogError, load_event_log
    from recsys.io.errors import DataError

    if not log_dir.is_dir():
        raise DataError(f"{log_dir}: data.events_log is not a directory")
    try:
        return load_event_log(log_dir)
    except EventLogError as exc:  # corrupt or mixed-layout log: one line, not a traceback
        raise DataError(f"data.events_log: {exc}") from None


def _read_event_export(export: Path) -> tuple[pa.Table, ExportReadReport]:
    from features.event_export import ExportError, read_export
    from recsys.io.errors import DataError

    if not export.is_dir():
        raise DataError(f"{export}: data.events_path is not a directory")
    try:
        return read_export(export)
    except ExportError as exc:  # a file that is not an export's: one line naming it, not a traceback
        raise DataError(f"data.events_path: {exc}") from None


def _take_in_service_events(
    cfg: TrainConfig, user_ids: np.ndarray, item_ids: np.ndarray, kol_ids: np.ndarray
) -> tuple[pa.Table, LogIntake, Path] | None:
    """The service's events of ``data.events_log`` or ``data.events_path`` (at most one is set),
    taken in by the :class:`LogIntake` rule; an export's unreadable rows are counted as skipped."""
    if cfg.data.events_log is not None:
        log_dir = Path(cfg.data.events_log)
        logged, intake = take_in_log(_read_event_log(log_dir), user_ids, item_ids, kol_ids)
        return logged, intake, log_dir
    if cfg.data.events_path is not None:
        export = Path(cfg.data.events_path)
        exported, report = _read_event_export(export)
        kept, intake = take_in_log(exported, user_ids, item_ids, kol_ids)
        intake.source = "event export"
        intake.read = report.total_rows  # rows of the files, before the export's own checks
        intake.skipped = {**report.skipped, **intake.skipped}
        return kept, intake, export
    return None


def prepare_world(cfg: TrainConfig, holdout: bool = True) -> Prepared:
    from recsys.io.world import load_world

    world = load_world(Path(cfg.data.path))
    try:
        return _prepare_loaded_world(cfg, world, holdout)
    except g.UnknownIdError as exc:  # name a string id as the data spells it, not by its key
        kind = exc.id_kind
        if kind is not None and exc.key in world.labels.get(kind)[0]:
            raise exc.named(world.labels.label(kind, exc.key)) from None
        raise


def _prepare_loaded_world(cfg: TrainConfig, world: World, holdout: bool) -> Prepared:
    from recsys.io.errors import DataError

    user_ids = _ids(world.users, "user_id")
    item_ids = _ids(world.items, "item_id")
    kol_ids = _ids(world.kols, "kol_id")
    intake: LogIntake | None = None
    service = _take_in_service_events(cfg, user_ids, item_ids, kol_ids)
    if service is not None:
        logged, intake, source = service
        user_ids = np.union1d(user_ids, intake.new_users)
        world.train_events, world.test_events = _with_event_log(
            world.events, logged, source, cfg.data.test_fraction
        )
    if world.train_events is None or world.test_events is None:
        raise DataError(f"{cfg.data.path}: world has no split/{{train,test}} (needed to train and evaluate)")
    if not holdout:  # every event trains; nothing is held out
        world.train_events = pa.concat_tables([world.train_events, world.test_events])
        world.test_events = world.test_events.slice(0, 0)
    items = world.items
    kols = world.kols
    posts = world.posts
    follows_t = world.follows
    friends_t = world.friends
    train_t = world.train_events
    test_t = world.test_events

    train_ev = g.events_from_table(train_t)
    test_ev = g.events_from_table(test_t)
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
    inter = Interactions(
        train=conf,
        test=test,
        user_ids=user_ids,
        item_ids=item_ids,
        extra_test=extra,
        train_time=_train_times(conf, train_ev, user_ids, item_ids),
    )

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
        **(intake.stats() if intake is not None else {}),
    }
    return Prepared(
        interactions=inter,
        seen=seen,
        world=wg,
        stats=stats,
        labels=world.labels,
        log_intake=intake,
        rows=_rows_used(world, cfg, intake),
    )


def _rows_used(world: Any, cfg: TrainConfig, intake: LogIntake | None) -> RowsReport:
    """Load reports of the tables this run used (and what the service's events gave, when
    ``data.events_log`` or ``data.events_path`` is set)."""
    reports = dict(world.reports)
    if intake is not None:
        reports[intake.source.replace(" ", "_")] = LoadReport(
            file=str(cfg.data.events_log if cfg.data.events_log is not None else cfg.data.events_path),
            table="events",
            total_rows=intake.read,
            kept_rows=intake.kept,
            skipped={reason: n for reason, n in intake.skipped.items() if n},
        )
    return rows_used(reports, cfg)


def rows_used(reports: dict[str, LoadReport], cfg: TrainConfig) -> RowsReport:
    """The reports of the tables a run used: the split when it trains on it, else the events (both
    engines: the Spark engine builds the same per-table reports)."""
    service = cfg.data.events_log is not None or cfg.data.events_path is not None
    skip: tuple[str, ...] = ("split/train", "split/test") if service else ("events",)
    if not service and "split/train" not in reports:
        skip = ()
    return RowsReport({name: r for name, r in reports.items() if name not in skip})


def _train_times(
    conf: sp.csr_matrix, ev: EventColumns, user_ids: np.ndarray, item_ids: np.ndarray
) -> sp.csr_matrix:
    """Latest event time of each training pair (so `kolfeed tune` validates chronologically)."""
    from recsys.validation import pair_times

    known = np.isin(ev.user_id, user_ids) & np.isin(ev.item_id, item_ids)
    rows = g.index_of(user_ids, ev.user_id[known], "user_id")
    cols = g.index_of(item_ids, ev.item_id[known], "item_id")
    return pair_times(conf, rows, cols, ev.ts[known])


def _post_engagement(ev: EventColumns, post_ids: np.ndarray, weights: dict[str, float]) -> np.ndarray:
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


def prepare_dataset(cfg: TrainConfig, holdout: bool = True) -> Prepared:
    from recsys.datasets import load_dataset
    from recsys.io.errors import DatasetError

    try:
        inter = load_dataset(Path(cfg.data.path), cfg.data.format, cfg.data.options)
    except DatasetError as exc:
        if "has no option" in str(exc):
            raise ConfigError(f"data.options: {exc}") from None
        raise
    if not holdout:  # every interaction trains; nothing is held out
        everything = (inter.train + inter.test).tocsr().astype(np.float32)
        everything.data[:] = 1.0
        inter = Interactions(
            train=everything,
            test=sp.csr_matrix(everything.shape, dtype=np.float32),
            user_ids=inter.user_ids,
            item_ids=inter.item_ids,
            labels=inter.labels,
        )
    seen = inter.train.tocsr(copy=True).astype(np.float32)
    seen.data[:] = 1.0
    seen.eliminate_zeros()
    stats = {
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "train_nnz": int(inter.train.nnz),
        "test_nnz": int(inter.test.nnz),
    }
    return Prepared(
        interactions=inter,
        seen=seen,
        world=None,
        stats=stats,
        labels=inter.labels,
        rows=RowsReport(strict_format=cfg.data.format, filtered_by=_filter_option(cfg)),
    )


def _filter_option(cfg: TrainConfig) -> str | None:
    rating = cfg.data.options.get("min_rating")
    return None if rating is None else f"min_rating={rating}"


def prepare(cfg: TrainConfig, holdout: bool = True) -> Prepared:
    """The run's data; ``holdout=False`` puts every event in ``train`` (and none in ``test``) with
    the same id maps, for ``export.refit_on_all_events``."""
    if not Path(cfg.data.path).exists():
        from recsys.io.errors import DataError

        raise DataError(f"{cfg.data.path}: data path does not exist (data.path)")
    if cfg.data.format == "world":
        return prepare_world(cfg, holdout)
    return prepare_dataset(cfg, holdout)

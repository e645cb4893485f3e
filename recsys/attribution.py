"""Per-KOL attribution: what each creator really sells, including sales through shares of their posts.

Why: merchants cannot measure a creator's return today (DESIGN.md). A creator's value is not only the
buys made straight from their post in the feed, but also the buys of friends who received the post
as a share (and friends of friends: group-buy cascades).

How a buy is credited (every buy exactly once, so the totals equal the log's GMV):

1. Its share path is reconstructed from ``request_id`` (the world generator's convention, see
   ``recsys.world.generate``): ``r<n>`` = reached from a feed request (depth 0); ``s<n>`` = reached
   through share event number ``n`` (0-based, in file order), depth = 1 + depth of that share event.
   Anything else (null, another id format, a dangling ``s<n>``) is an *unknown path* and treated as
   direct (depth 0); such buys are counted in ``buys_unknown_path``.
2. The KOL is the buy's own ``kol_id``; if that is null but the buy came through a share, the KOL of
   the share it came through (recursively up the cascade).
3. Buys with no KOL go to the explicit ``unattributed`` bucket (reason ``no_kol``); buys deeper than
   ``depth_limit`` share hops go there too (reason ``beyond_depth``).

GMV of a buy is its ``value`` (null counts as 0). Funnel counts (impressions, clicks, shares) are all
events carrying the KOL's id, whichever way they were reached. Share paths are resolved on the full
log *before* the optional time window is applied, so share numbers stay valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from recsys.event_columns import BUY, CLICK, IMPRESSION, SHARE, EventColumns
from recsys.progress import progress as progress_bar
from recsys.schema import NO_ID

DEFAULT_DEPTH_LIMIT = 3
UNKNOWN_DEPTH = -1


class AttributionError(ValueError):
    """Inputs to the attribution report are inconsistent (message names the table and column)."""


class KolReport(BaseModel):
    kol_id: str
    """The creator's id as the shop spells it (a string id's label, an integer id's decimal)."""
    impressions: int
    clicks: int
    shares: int
    buys: int
    gmv: float
    direct_buys: int
    direct_gmv: float
    share_buys: int
    """Buys credited through share cascades (depth 1..depth_limit)."""
    share_gmv: float
    gmv_by_depth: dict[int, float]
    """Depth 0 = straight from the feed; depth d = d share hops."""
    impressions_via_share: int
    click_rate: float | None
    """clicks / impressions."""
    share_per_click: float | None
    buy_per_click: float | None
    buy_per_impression: float | None
    followers_gained: int | None
    """Follows of this KOL in the window, or in the log's time span when no start is given
    (None without a follows table)."""
    followers_total: int | None
    """All follows of this KOL before the window's stop."""
    vertical_fit: float | None
    """Share of the KOL's credited GMV in the KOL's own verticals (None without items+kols tables or GMV)."""
    verticals: list[str]
    commission: float | None
    """commission_rate x GMV, when a rate is given."""
    cost: float | None
    roi: float | None
    """commission / cost, when both are known."""


class UnattributedBucket(BaseModel):
    buys: int
    gmv: float
    by_reason: dict[str, float]
    """GMV per reason: ``no_kol``, ``beyond_depth``."""
    buys_by_reason: dict[str, int]


class AttributionReport(BaseModel):
    depth_limit: int
    start_ts: int | None
    stop_ts: int | None
    commission_rate: float | None
    log_buys: int
    log_gmv: float
    """Sum of buy values in the window, straight from the log."""
    attributed_gmv: float
    """Sum over KOLs plus the unattributed bucket; equals ``log_gmv`` (see ``balanced``)."""
    balanced: bool
    buys_unknown_path: int
    kols: list[KolReport]
    """Sorted by GMV, largest first."""
    unattributed: UnattributedBucket

    def kol(self, kol_id: int | str) -> KolReport:
        """One KOL's row by its external id (``7`` and ``"7"`` are the same id)."""
        wanted = str(kol_id)
        for k in self.kols:
            if k.kol_id == wanted:
                return k
        raise KeyError(f"no events for KOL {kol_id}")


UNLABELLED = "?"
"""Prefix of a hashed creator key that no label names (``?-4611…``): a string id first seen after the
run whose labels the report uses; a retrain labels it."""


def kol_name(key: int, labels: Mapping[int, str] | None) -> str:
    """The external id of a creator key: its label, else its decimal (integer ids)."""
    found = labels.get(key) if labels else None
    if found is not None:
        return found
    return str(key) if key >= 0 else f"{UNLABELLED}{key}"


# ----------------------------------------------------------------------------------------- cascades


def share_paths(cols: EventColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event: share depth (``UNKNOWN_DEPTH`` if unknown), parent share row (-1 if none), and the
    effective KOL (own ``kol_id``, else inherited from the share it came through).

    ``cols`` must be the whole log in file order (share numbers count share events in that order).
    """
    n = len(cols)
    ids = cols.request_id if cols.request_id is not None else np.full(n, None, dtype=object)
    req = pa.array(ids.tolist(), type=pa.string()).fill_null("")
    is_feed = pc.starts_with(req, "r").to_numpy(zero_copy_only=False)
    is_sref = pc.match_substring_regex(req, r"^s[0-9]+$").to_numpy(zero_copy_only=False)
    share_rows = np.flatnonzero(cols.action == SHARE)
    depth = np.full(n, UNKNOWN_DEPTH, dtype=np.int64)
    depth[is_feed] = 0
    parent = np.full(n, -1, dtype=np.int64)
    kol = cols.kol_id.copy()
    s_rows = np.flatnonzero(is_sref)
    if s_rows.size == 0:
        return depth, parent, kol
    sref = req.take(pa.array(s_rows))
    num = np.asarray(pc.cast(pc.utf8_slice_codeunits(sref, 1), pa.int64()).to_numpy(zero_copy_only=False))
    ok = (num < share_rows.size) & (num >= 0)
    s_rows, num = s_rows[ok], num[ok]
    par = share_rows[num]
    ok = par < s_rows  # a share must precede the events it brought
    s_rows, par = s_rows[ok], par[ok]
    parent[s_rows] = par
    # Parents precede children, so repeated vectorised passes settle every chain (one pass per hop).
    todo = np.ones(s_rows.size, dtype=bool)
    while todo.any():
        pd = depth[par[todo]]
        ready = pd != UNKNOWN_DEPTH
        if not ready.any():
            break  # the rest lead back to a share whose own path is unknown
        idx = np.flatnonzero(todo)[ready]
        rows = s_rows[idx]
        depth[rows] = pd[ready] + 1
        missing_kol = kol[rows] == NO_ID
        kol[rows[missing_kol]] = kol[par[idx][missing_kol]]
        todo[idx] = False
    return depth, parent, kol


# ------------------------------------------------------------------------------------------ helpers


def _column(table: Any, name: str, what: str) -> np.ndarray:
    if isinstance(table, pa.Table):
        if name not in table.column_names:
            raise AttributionError(f"{what} table lacks column {name!r}")
        return np.asarray(table[name].to_numpy(zero_copy_only=False))
    if name not in table:
        raise AttributionError(f"{what} table lacks column {name!r}")
    return np.asarray(table[name])


def _rate(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _followers(
    follows: Any, start_ts: int | None, stop_ts: int | None
) -> tuple[dict[int, int], dict[int, int]]:
    """(follows gained in ``[start_ts, stop_ts)``, all follows before ``stop_ts``) per KOL."""
    kol = _column(follows, "kol_id", "follows").astype(np.int64)
    ts = _column(follows, "ts", "follows").astype(np.int64)
    before_stop = np.ones(len(kol), dtype=bool) if stop_ts is None else ts < stop_ts
    gained = before_stop if start_ts is None else before_stop & (ts >= start_ts)

    def per_kol(mask: np.ndarray) -> dict[int, int]:
        ids, counts = np.unique(kol[mask], return_counts=True)
        return {int(k): int(c) for k, c in zip(ids, counts, strict=True)}

    return per_kol(gained), per_kol(before_stop)


def _verticals(kols: Any) -> dict[int, list[str]]:
    ids = _column(kols, "kol_id", "kols").astype(np.int64)
    verts = _column(kols, "verticals", "kols")
    return {
        int(k): [v for v in (str(s).split("|") if s is not None else []) if v]
        for k, s in zip(ids, verts, strict=True)
    }


def _categories(items: Any) -> dict[int, str]:
    ids = _column(items, "item_id", "items").astype(np.int64)
    cats = _column(items, "category", "items")
    return {int(i): str(c) for i, c in zip(ids, cats, strict=True)}


# ------------------------------------------------------------------------------------------- report


def kol_attribution(
    events: Any,
    *,
    items: Any = None,
    kols: Any = None,
    follows: Any = None,
    depth_limit: int = DEFAULT_DEPTH_LIMIT,
    commission_rate: float | None = None,
    costs: Mapping[int, float] | None = None,
    start_ts: int | None = None,
    stop_ts: int | None = None,
    progress: bool = False,
    kol_labels: Mapping[int, str] | None = None,
) -> AttributionReport:
    """Attribute every buy in ``[start_ts, stop_ts)`` to exactly one KOL or the unattributed bucket.

    ``events`` is the whole log in file order (pyarrow Table, column mapping or EventColumns);
    ``items``/``kols``/``follows`` are optional tables enabling vertical fit and followers gained;
    ``costs`` maps kol_id (key) → what the creator cost, for ROI; ``progress`` shows a bar on stderr;
    ``kol_labels`` ({key: label}, a run's ``labels.parquet``) names string creator ids in the report.
    """
    if depth_limit < 0:
        raise AttributionError(f"depth_limit must be >= 0, got {depth_limit}")
    if commission_rate is not None and not 0 <= commission_rate <= 1:
        raise AttributionError(f"commission rate must be in [0, 1], got {commission_rate}")
    cols = EventColumns.from_table(events)
    depth, _parent, kol_eff = share_paths(cols)
    window = cols.in_window(start_ts, stop_ts)
    action = cols.action[window]
    kol = kol_eff[window]
    dep = depth[window]
    item = cols.item_id[window]
    value = np.nan_to_num(cols.value[window])

    is_buy = action == BUY
    buy_gmv = np.where(is_buy, value, 0.0)
    log_gmv = math.fsum(buy_gmv[is_buy].tolist())
    unknown_path = is_buy & (dep == UNKNOWN_DEPTH)
    dep = np.where(dep == UNKNOWN_DEPTH, 0, dep)
    no_kol = is_buy & (kol == NO_ID)
    too_deep = is_buy & ~no_kol & (dep > depth_limit)
    credited = is_buy & ~no_kol & ~too_deep

    # "Gained" = followed within the window; with no start, within the log's own time span.
    gain_start = start_ts if start_ts is not None else (int(cols.ts.min()) if len(cols) else None)
    followers, followers_total = (
        _followers(follows, gain_start, stop_ts) if follows is not None else (None, None)
    )
    verticals = _verticals(kols) if kols is not None else {}
    categories = _categories(items) if items is not None else None

    kol_ids = np.unique(kol[kol != NO_ID])
    reports: list[KolReport] = []
    order = np.argsort(kol, kind="stable")
    sorted_kol = kol[order]
    for k in progress_bar(kol_ids.tolist(), desc="KOLs", unit="kol", enabled=progress):
        lo, hi = np.searchsorted(sorted_kol, [k, k + 1])
        rows = order[lo:hi]
        a, d = action[rows], dep[rows]
        c = credited[rows]
        g = buy_gmv[rows]
        imps = int((a == IMPRESSION).sum())
        clicks = int((a == CLICK).sum())
        shares = int((a == SHARE).sum())
        buys = int(c.sum())
        gmv = math.fsum(g[c].tolist())
        direct = c & (d == 0)
        via = c & (d > 0)
        by_depth = {int(x): math.fsum(g[c & (d == x)].tolist()) for x in np.unique(d[c]).tolist()}
        vfit: float | None = None
        verts = verticals.get(int(k), [])
        if categories is not None and kols is not None and gmv > 0:
            in_vert = np.array(
                [categories.get(int(i), "") in verts for i in item[rows][c].tolist()], dtype=bool
            )
            vfit = math.fsum(g[c][in_vert].tolist()) / gmv
        commission = commission_rate * gmv if commission_rate is not None else None
        cost = None if costs is None or int(k) not in costs else float(costs[int(k)])
        reports.append(
            KolReport(
                kol_id=kol_name(int(k), kol_labels),
                impressions=imps,
                clicks=clicks,
                shares=shares,
                buys=buys,
                gmv=gmv,
                direct_buys=int(direct.sum()),
                direct_gmv=math.fsum(g[direct].tolist()),
                share_buys=int(via.sum()),
                share_gmv=math.fsum(g[via].tolist()),
                gmv_by_depth=by_depth,
                impressions_via_share=int(((a == IMPRESSION) & (d > 0)).sum()),
                click_rate=_rate(clicks, imps),
                share_per_click=_rate(shares, clicks),
                buy_per_click=_rate(buys, clicks),
                buy_per_impression=_rate(buys, imps),
                followers_gained=None if followers is None else followers.get(int(k), 0),
                followers_total=None if followers_total is None else followers_total.get(int(k), 0),
                vertical_fit=vfit,
                verticals=verts,
                commission=commission,
                cost=cost,
                roi=commission / cost if commission is not None and cost else None,
            )
        )
    reports.sort(key=lambda r: -r.gmv)  # stable: ties keep ascending key order

    unattributed = UnattributedBucket(
        buys=int((no_kol | too_deep).sum()),
        gmv=math.fsum(buy_gmv[no_kol | too_deep].tolist()),
        by_reason={
            "no_kol": math.fsum(buy_gmv[no_kol].tolist()),
            "beyond_depth": math.fsum(buy_gmv[too_deep].tolist()),
        },
        buys_by_reason={"no_kol": int(no_kol.sum()), "beyond_depth": int(too_deep.sum())},
    )
    attributed = math.fsum([*(r.gmv for r in reports), unattributed.gmv])
    return AttributionReport(
        depth_limit=depth_limit,
        start_ts=start_ts,
        stop_ts=stop_ts,
        commission_rate=commission_rate,
        log_buys=int(is_buy.sum()),
        log_gmv=log_gmv,
        attributed_gmv=attributed,
        balanced=math.isclose(attributed, log_gmv, rel_tol=1e-9, abs_tol=1e-6),
        buys_unknown_path=int(unknown_path.sum()),
        kols=reports,
        unattributed=unattributed,
    )

"""Graphs built from a world's events: pure numpy/scipy, no I/O.

Why here: every model trains on one behaviour-weighted user–item confidence matrix, and ranking needs
the social side (who shares with whom, which KOLs a user engages with, what each KOL really sells).
All of it is derived from the same event arrays so training and serving agree on the numbers.

Recency decay uses the newest training event as "now" (never the wall clock) so that a rebuild of the
same data gives the same matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys.event_columns import EventColumns, EventTableError
from recsys.schema import ACTION_CODE, ACTION_NAMES, ACTIONS, NO_ID

DAY_SECONDS = 86_400.0
POSITIVE_CODES: np.ndarray = np.array(
    [i for i, a in enumerate(ACTIONS) if not a.negative and a.name != "impression"], dtype=np.int8
)
HIDE_CODES: np.ndarray = np.array([i for i, a in enumerate(ACTIONS) if a.negative], dtype=np.int8)


class GraphError(ValueError):
    """Events refer to ids the id maps do not know, or inputs are inconsistent."""


class UnknownIdError(GraphError):
    """An id that the id map of ``field`` lacks; ``key`` is its int64 key (:mod:`recsys.ids`), so a
    caller holding the labels of string ids can name it as the data spells it."""

    def __init__(self, field: str, key: int, n_known: int, shown: str | None = None) -> None:
        self.field = field
        self.key = key
        self.n_known = n_known
        what = f"{field} {shown if shown is not None else key}"
        if n_known:
            super().__init__(f"{what} is not in the id map ({n_known} known)")
        else:
            super().__init__(f"{what} is not in the (empty) id map")

    @property
    def id_kind(self) -> str | None:
        """``user``, ``item``, ``kol`` or ``post`` from the field's name (None if it names none)."""
        column = self.field.rsplit(".", 1)[-1]
        if column in ("user_id", "friend_id", "to_user_id"):
            return "user"
        return {"item_id": "item", "kol_id": "kol", "post_id": "post"}.get(column)

    def named(self, label: str) -> UnknownIdError:
        """The same error naming the id as the data spells it (``label``) instead of its key."""
        return UnknownIdError(self.field, self.key, self.n_known, shown=repr(label))


def events_from_table(table: pa.Table) -> EventColumns:
    """The graphs' view of an events table: ``EventColumns.from_table`` without the report's checks
    (missing id columns read as ``NO_ID``); an unreadable action is a GraphError."""
    try:
        return EventColumns.from_table(table, strict=False)
    except EventTableError as exc:
        raise GraphError(str(exc)) from None


def index_of(ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """Dense indices of ``values`` in the sorted unique ``ids``; unknown values raise GraphError."""
    if len(ids) == 0:
        if len(values):
            raise UnknownIdError(what, int(values[0]), 0)
        return np.zeros(0, dtype=np.int64)
    pos_c = np.clip(np.searchsorted(ids, values), 0, len(ids) - 1)
    ok = ids[pos_c] == values
    if not np.all(ok):
        raise UnknownIdError(what, int(values[~ok][0]), len(ids))
    return pos_c.astype(np.int64)


def decay_factor(ts: np.ndarray, now: float, half_life_days: float | None) -> np.ndarray:
    """0.5 ** (age / half-life); 1 everywhere without a half-life. Future events count as age 0."""
    if half_life_days is None:
        return np.ones(len(ts), dtype=np.float64)
    age = np.maximum(now - ts.astype(np.float64), 0.0)
    return np.power(0.5, age / (half_life_days * DAY_SECONDS))


def action_weight_vector(weights: Mapping[str, float], behaviours: Sequence[str] | None = None) -> np.ndarray:
    """Weight per action code; actions not in ``behaviours`` get 0 (hides always keep their weight)."""
    vec = np.zeros(len(ACTIONS), dtype=np.float64)
    keep = set(behaviours) if behaviours is not None else set(ACTION_NAMES)
    for code, spec in enumerate(ACTIONS):
        if spec.name in keep or spec.negative:
            vec[code] = float(weights.get(spec.name, spec.default_weight))
    return vec


def _coo(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.coo_matrix((vals.astype(np.float64), (rows, cols)), shape=shape).tocsr()
    m.sum_duplicates()
    return m


def _positive_part(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.tocsr(copy=True)
    m.data[m.data < 0] = 0.0
    m.eliminate_zeros()
    return m


def confidence_matrix(
    events: EventColumns,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    weights: Mapping[str, float],
    behaviours: Sequence[str] | None = None,
    half_life_days: float | None = None,
    now: float | None = None,
) -> sp.csr_matrix:
    """Users x items: sum over events of weight[action] * decay. Hides subtract; pairs whose total is
    not positive are dropped (a hidden item is not a training positive). Float32 CSR."""
    w = action_weight_vector(weights, behaviours)[events.action]
    keep = w != 0
    ev = events.select(keep)
    if now is None:
        now = float(events.ts.max()) if len(events) else 0.0
    vals = w[keep] * decay_factor(ev.ts, now, half_life_days)
    m = _positive_part(_event_matrix(ev, user_ids, "user_id", item_ids, "item_id", vals))
    return m.astype(np.float32)


def _event_matrix(
    ev: EventColumns,
    row_ids: np.ndarray,
    row_column: str,
    col_ids: np.ndarray,
    col_column: str,
    vals: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Rows ``row_ids`` x columns ``col_ids``: the sum of ``vals`` (1 per event when None) at each
    event's ``row_column`` and ``col_column`` ids; an id the maps lack raises UnknownIdError."""
    rows = index_of(row_ids, getattr(ev, row_column), row_column)
    cols = index_of(col_ids, getattr(ev, col_column), col_column)
    data = np.ones(len(ev)) if vals is None else vals
    return _coo(rows, cols, data, (len(row_ids), len(col_ids)))


def behaviour_matrix(
    events: EventColumns, user_ids: np.ndarray, item_ids: np.ndarray, action: str
) -> sp.csr_matrix:
    """Users x items count of one action (e.g. the click, share or buy graph)."""
    ev = events.select(events.action == ACTION_CODE[action])
    return _event_matrix(ev, user_ids, "user_id", item_ids, "item_id").astype(np.float32)


def behaviour_graphs(
    events: EventColumns,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    actions: Sequence[str] = ("click", "share", "buy"),
) -> dict[str, sp.csr_matrix]:
    return {a: behaviour_matrix(events, user_ids, item_ids, a) for a in actions}


def positive_matrix(events: EventColumns, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """Binary users x items: any positive (non-impression, non-hide) event."""
    ev = events.select(np.isin(events.action, POSITIVE_CODES))
    m = _event_matrix(ev, user_ids, "user_id", item_ids, "item_id")
    m.data[:] = 1.0
    return m.astype(np.float32)


def share_graph(events: EventColumns, user_ids: np.ndarray) -> sp.csr_matrix:
    """Users x users: number of shares from row user to column user (the trust graph)."""
    ev = events.select((events.action == ACTION_CODE["share"]) & (events.to_user_id != NO_ID))
    return _event_matrix(ev, user_ids, "user_id", user_ids, "to_user_id").astype(np.float32)


def user_kol_engagement(
    events: EventColumns,
    user_ids: np.ndarray,
    kol_ids: np.ndarray,
    weights: Mapping[str, float],
    half_life_days: float | None = 30.0,
    now: float | None = None,
) -> sp.csr_matrix:
    """Users x KOLs: recency-decayed, action-weighted engagement through the KOL's posts.

    Signed: hides through a KOL subtract, so a user who hides a creator's posts ends up negative."""
    w = action_weight_vector(weights)[events.action]
    keep = (w != 0) & (events.kol_id != NO_ID)
    ev = events.select(keep)
    if now is None:
        now = float(events.ts.max()) if len(events) else 0.0
    vals = w[keep] * decay_factor(ev.ts, now, half_life_days)
    m = _event_matrix(ev, user_ids, "user_id", kol_ids, "kol_id", vals)
    m.eliminate_zeros()
    return m.astype(np.float32)


def user_kol_action(
    events: EventColumns, user_ids: np.ndarray, kol_ids: np.ndarray, action: str = "buy"
) -> sp.csr_matrix:
    """Users x KOLs count of one action made through a KOL's posts (e.g. buys brought by a KOL)."""
    ev = events.select((events.action == ACTION_CODE[action]) & (events.kol_id != NO_ID))
    return _event_matrix(ev, user_ids, "user_id", kol_ids, "kol_id").astype(np.float32)


def kol_category_fit(
    events: EventColumns,
    kol_ids: np.ndarray,
    item_ids: np.ndarray,
    item_category: np.ndarray,
    categories: Sequence[str],
    weights: Mapping[str, float],
    smoothing: float = 5.0,
) -> np.ndarray:
    """KOLs x categories: each KOL's share of positive, action-weighted conversions by item category,
    smoothed towards the global category mix with ``smoothing`` pseudo-conversions. Rows sum to 1.

    ``item_category`` is the category name of each item in ``item_ids`` order."""
    cat_index = {c: i for i, c in enumerate(categories)}
    try:
        item_cat = np.array([cat_index[str(c)] for c in item_category], dtype=np.int64)
    except KeyError as exc:
        raise GraphError(f"item category {exc.args[0]!r} not in the category list") from None
    w = action_weight_vector(weights)[events.action]
    keep = (w > 0) & (events.kol_id != NO_ID)
    ev = events.select(keep)
    k = index_of(kol_ids, ev.kol_id, "kol_id")
    c = item_cat[index_of(item_ids, ev.item_id, "item_id")]
    counts = np.zeros((len(kol_ids), len(categories)), dtype=np.float64)
    np.add.at(counts, (k, c), w[keep])
    return smoothed_fit(counts, smoothing)


def smoothed_fit(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """KOLs x categories weighted conversion counts → rows that sum to 1, pulled towards the global
    category mix by ``smoothing`` pseudo-conversions (shared by the local and the Spark engine)."""
    n_categories = counts.shape[1]
    total = counts.sum(axis=0)
    prior = total / total.sum() if total.sum() > 0 else np.full(n_categories, 1.0 / max(n_categories, 1))
    fit = (counts + smoothing * prior[None, :]) / (counts.sum(axis=1, keepdims=True) + smoothing)
    return fit.astype(np.float32)


def drop_seen(test: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    """Held-out pairs the user already interacted with in training are not discoveries: remove them."""
    seen_bin = seen.copy()
    seen_bin.data[:] = 1.0
    out = test - test.multiply(seen_bin)
    out = sp.csr_matrix(out)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out.astype(np.float32)

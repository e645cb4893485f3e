"""Key layout and the backend-neutral translation of events into sorted-set writes.

Both backends store the same thing: sorted sets (member -> score) under the same key names. An
event batch is first turned into a :class:`WritePlan` here, then each backend applies the plan
(Redis as one pipeline, memory as dict updates), so their semantics cannot drift apart.

Keys (``P`` = prefix option, default ``kf:``; members are item or KOL ids):

=================================  ====================================  =====================
key                                score                                 bound
=================================  ====================================  =====================
``P u:{user}:clicks``              latest ts of click/like/save/cart     ``recent_limit``
``P u:{user}:shares``              latest ts of share                    ``recent_limit``
``P u:{user}:buys``                latest ts of buy                      ``bought_limit``
``P u:{user}:seen``                latest ts of impression               ``seen_limit``
``P u:{user}:hid_items``           latest ts of hide                     ``hidden_limit``
``P u:{user}:hid_kols``            latest ts of hide with a KOL          ``hidden_limit``
``P u:{user}:aff:G``               decayed KOL affinity, generation G    ``affinity_kol_limit``
``P trend:all:G``                  decayed positive actions per item     ``trending_limit``
``P trend:cat:CATEGORY:G``         same, within one category             ``trending_limit``
``P trend:{tS}:all:G`` (sharded)   trending of items with item % N = S   ``trending_limit``
=================================  ====================================  =====================

(no space after ``P`` in the real keys). The braces around the user id are literal: a Redis Cluster
hash tag, so all keys of one user live in one slot and a user's state is read by one script on one
node. Trending is the one global hot spot; with ``trending_shards`` N > 1 (the cluster default) each
item's counters live in partition ``item % N`` under the hash tag ``{tS}``, so the writes spread over
the cluster's nodes, and a read takes the top k of every partition and merges them (exact: each
item is counted in exactly one partition). N = 1 keeps the unsharded names.

Per-user keys expire ``user_ttl_s`` after the user's last write; trending keys two generations after
their last write (see :mod:`features.decay`). Bounds keep the highest scores (the newest, for
time-scored sets); ties drop the smaller member as Redis does (byte order of the decimal id).
Within one batch, each key is trimmed once after all its writes (the memory backend lets keys
bounded above 1,000 members, i.e. trending, overshoot by a quarter before cutting back, to avoid
sorting 10,000 items per batch). For affinity the bound drops the lowest scores first, i.e. the most
negative KOLs; their hides stay recorded in ``hid_kols``.

Weights are ``recsys.schema.DEFAULT_ACTION_WEIGHTS``: every non-zero weight with a KOL moves the
user's affinity (hide subtracts); every positive weight adds to trending (overall, and in the
event's category when it has one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from features.base import StoreEvent, UserState
from features.decay import DecayClock
from features.errors import InvalidEventError
from features.options import StoreOptions
from recsys.schema import ACTION_NAMES, DEFAULT_ACTION_WEIGHTS

CLICK_LIKE = frozenset({"click", "like", "save", "cart"})


@dataclass(frozen=True)
class KeyLayout:
    prefix: str
    trending_shards: int = 1

    def user(self, user_id: int, part: str) -> str:
        return f"{self.prefix}u:{{{user_id}}}:{part}"

    def affinity(self, user_id: int, gen: int) -> str:
        return f"{self.prefix}u:{{{user_id}}}:aff:{gen}"

    def trending(self, category: str | None, gen: int, shard: int = 0) -> str:
        """The trending key of one partition (``shard``: see :meth:`trending_shard`)."""
        scope = "all" if category is None else f"cat:{category}"
        if self.trending_shards == 1:
            return f"{self.prefix}trend:{scope}:{gen}"
        return f"{self.prefix}trend:{{t{shard}}}:{scope}:{gen}"

    def announcement(self, name: str) -> str:
        """A service-wide announcement (see ``FeatureStore.announce``); ``clear`` keeps these."""
        return f"{self.prefix}svc:{name}"

    def trending_shard(self, item_id: int) -> int:
        return item_id % self.trending_shards

    def trending_partitions(self, category: str | None, gen: int) -> list[str]:
        """Every partition's key of one trending scope: a read merges their top k."""
        return [self.trending(category, gen, s) for s in range(self.trending_shards)]


def merge_top(parts: Sequence[Sequence[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    """The k best of several partitions' top-k lists (each item is in one partition only); ties
    order as Redis orders a ZREVRANGE (the larger member's decimal text first)."""
    merged = [pair for part in parts for pair in part]
    merged.sort(key=lambda pair: (pair[1], str(pair[0])), reverse=True)
    return merged[:k]


@dataclass
class WritePlan:
    latest: dict[str, dict[int, float]] = field(default_factory=dict)
    """key -> member -> ts; keep the max ts per member (ZADD GT)."""
    incr: dict[str, dict[int, float]] = field(default_factory=dict)
    """key -> member -> amount to add (ZINCRBY)."""
    limits: dict[str, int] = field(default_factory=dict)
    """key -> keep only this many highest-scored members."""
    ttls: dict[str, int] = field(default_factory=dict)
    """key -> seconds to live after this write."""

    def touch(self, key: str, limit: int, ttl: int) -> None:
        self.limits[key] = limit
        self.ttls[key] = ttl

    def set_latest(self, key: str, member: int, ts: float) -> None:
        members = self.latest.setdefault(key, {})
        old = members.get(member)
        if old is None or ts > old:
            members[member] = ts

    def add(self, key: str, member: int, amount: float) -> None:
        members = self.incr.setdefault(key, {})
        members[member] = members.get(member, 0.0) + amount


def layout_of(opts: StoreOptions) -> KeyLayout:
    return KeyLayout(opts.prefix, opts.trending_shards)


def validate_events(events: Sequence[StoreEvent]) -> None:
    for i, ev in enumerate(events):
        if ev.action not in DEFAULT_ACTION_WEIGHTS:
            raise InvalidEventError(
                f"event #{i} (user {ev.user_id}, item {ev.item_id}): unknown action {ev.action!r}; "
                f"expected one of {', '.join(ACTION_NAMES)}"
            )
        if not math.isfinite(ev.ts):
            raise InvalidEventError(
                f"event #{i} (user {ev.user_id}): ts must be a finite number, got {ev.ts!r}"
            )


def plan_writes(events: Sequence[StoreEvent], opts: StoreOptions) -> WritePlan:
    validate_events(events)
    keys = layout_of(opts)
    aff_clock = DecayClock(opts.affinity_half_life_s)
    trend_clock = DecayClock(opts.trending_half_life_s)
    trend_ttl = math.ceil(2 * trend_clock.generation_s)
    user_ttl = opts.user_ttl_s
    plan = WritePlan()

    def remember(user_id: int, part: str, member: int, ts: float, limit: int) -> None:
        key = keys.user(user_id, part)
        plan.set_latest(key, member, ts)
        plan.touch(key, limit, user_ttl)

    for ev in events:
        action, uid, item = ev.action, ev.user_id, ev.item_id
        if action in CLICK_LIKE:
            remember(uid, "clicks", item, ev.ts, opts.recent_limit)
        elif action == "share":
            remember(uid, "shares", item, ev.ts, opts.recent_limit)
        elif action == "buy":
            remember(uid, "buys", item, ev.ts, opts.bought_limit)
        elif action == "impression":
            remember(uid, "seen", item, ev.ts, opts.seen_limit)
        elif action == "hide":
            remember(uid, "hid_items", item, ev.ts, opts.hidden_limit)
            if ev.kol_id is not None:
                remember(uid, "hid_kols", ev.kol_id, ev.ts, opts.hidden_limit)

        weight = DEFAULT_ACTION_WEIGHTS[action]
        if weight != 0.0 and ev.kol_id is not None:
            for gen, amount in aff_clock.contributions(ev.ts, weight):
                key = keys.affinity(uid, gen)
                plan.add(key, ev.kol_id, amount)
                plan.touch(key, opts.affinity_kol_limit, user_ttl)
        if weight > 0.0:
            scopes: tuple[str | None, ...] = (None,) if ev.category is None else (None, ev.category)
            for scope in scopes:
                for gen, amount in trend_clock.contributions(ev.ts, weight):
                    key = keys.trending(scope, gen, keys.trending_shard(item))
                    plan.add(key, item, amount)
                    plan.touch(key, opts.trending_limit, trend_ttl)
    return plan


@dataclass
class RawUserRead:
    """What a backend fetched for one user, before it becomes a :class:`UserState`."""

    clicks: list[int]
    shares: list[int]
    buys: list[int]
    seen: list[int]
    hidden_items: list[int]
    hidden_kols: list[int]
    affinity: list[tuple[int, float]]


def user_read_keys(keys: KeyLayout, user_id: int, affinity_gen: int) -> tuple[str, ...]:
    """Keys of one user in the order of :class:`RawUserRead` fields (newest-first reads first)."""
    return (
        keys.user(user_id, "clicks"),
        keys.user(user_id, "shares"),
        keys.user(user_id, "buys"),
        keys.user(user_id, "seen"),
        keys.user(user_id, "hid_items"),
        keys.user(user_id, "hid_kols"),
        keys.affinity(user_id, affinity_gen),
    )


def raw_user_read(lists: Sequence[list[int]], affinity: list[tuple[int, float]]) -> RawUserRead:
    """Build from the six member lists (order of :func:`user_read_keys`) and the affinity pairs."""
    clicks, shares, buys, seen, hidden_items, hidden_kols = lists
    return RawUserRead(clicks, shares, buys, seen, hidden_items, hidden_kols, affinity)


def assemble(raw: RawUserRead, affinity_factor: float, recent_limit: int) -> UserState:
    return UserState(
        recent_clicks=raw.clicks[:recent_limit],
        recent_shares=raw.shares[:recent_limit],
        recent_buys=raw.buys[:recent_limit],
        seen=set(raw.seen),
        bought=set(raw.buys),
        hidden_items=set(raw.hidden_items),
        hidden_kols=set(raw.hidden_kols),
        kol_affinity={kol: score * affinity_factor for kol, score in raw.affinity},
    )

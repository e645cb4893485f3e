"""Exactly-once application of a logged event batch to Redis: counters and log position in ONE script.

Why: the store's counters (KOL affinity, trending) are not idempotent, and the replayer's position
file can lag the store (a crash between "store accepted" and "position written") or outlive it (a
Redis restarted empty). So the store itself keeps, per event log and per *slot group*, the highest
sequence number it has applied, in a key beside the counters, and one Lua script per group applies
only the events above that position and advances it, atomically. A batch applied twice, or replayed
over what the store already holds, changes nothing.

Groups: a single Redis is one group (one script may touch any key). On a Redis Cluster a script may
only touch one slot, so every slot is a group with its own position key (tagged to land in that
slot); an event's user keys and its trending partition are usually two groups, each exactly-once.

A missing position key means the group lost its data (a restarted primary) unless the log is being
rebuilt: a normal apply then refuses the group (:class:`~features.errors.StoreDataLost`) and the
outbox replays the log from the start with ``rebuilding=True`` (a missing position counts as 0, the
groups that kept their data skip what they hold), then :func:`seal`s the log: every group without a
position gets the end of the log, so later applies know the group is intact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

from features.base import StoreEvent
from features.layout import plan_writes, validate_events
from features.options import StoreOptions

CLUSTER_SLOTS = 16_384

LOGGED_APPLY_LUA = """
local pos = redis.call('GET', KEYS[1])
if not pos then
  if ARGV[1] == '0' then return -1 end
  pos = 0
else
  pos = tonumber(pos)
end
local last = tonumber(ARGV[2])
if last <= pos then return 0 end
local ntrim = tonumber(ARGV[3])
local i = 4 + 3 * ntrim
local applied = 0
while i <= #ARGV do
  local seq, nops = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  i = i + 2
  local fresh = seq > pos
  if fresh then applied = applied + 1 end
  for _ = 1, nops do
    if fresh then
      local key = KEYS[tonumber(ARGV[i + 1])]
      if ARGV[i] == 'l' then
        redis.call('ZADD', key, 'GT', ARGV[i + 3], ARGV[i + 2])
      else
        redis.call('ZINCRBY', key, ARGV[i + 3], ARGV[i + 2])
      end
    end
    i = i + 4
  end
end
if applied > 0 then
  for t = 0, ntrim - 1 do
    local key = KEYS[tonumber(ARGV[4 + 3 * t])]
    redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[5 + 3 * t]) + 1))
    redis.call('EXPIRE', key, ARGV[6 + 3 * t])
  end
end
redis.call('SET', KEYS[1], last)
return applied
"""
"""KEYS = [position, data keys...]; ARGV = [rebuilding 0/1, last seq, n trims, (key#, limit, ttl)*,
then per event: seq, n ops, (op l=latest|i=incr, key#, member, value)*]. Returns the events applied,
-1 when the position is missing outside a rebuild (the group lost its data)."""


@dataclass
class GroupWrite:
    """One group's share of a batch, encoded for :data:`LOGGED_APPLY_LUA`."""

    keys: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    records: list[str | int | float] = field(default_factory=list)
    trims: dict[str, tuple[int, int]] = field(default_factory=dict)

    def key_number(self, key: str) -> int:
        """1-based position in KEYS, the position key being KEYS[1]."""
        number = self._index.get(key)
        if number is None:
            self.keys.append(key)
            number = self._index[key] = len(self.keys) + 1
        return number

    def args(self, rebuilding: bool, last_seq: int) -> list[str | int | float]:
        head: list[str | int | float] = ["1" if rebuilding else "0", last_seq, len(self.trims)]
        for key, (limit, ttl) in self.trims.items():
            head += [self._index[key], limit, ttl]
        return head + self.records


def group_writes(
    batch: Sequence[tuple[int, StoreEvent]], opts: StoreOptions, group_of: Callable[[str], int]
) -> dict[int, GroupWrite]:
    """Each event's writes (the plan of :func:`features.layout.plan_writes`), split by group."""
    validate_events([ev for _, ev in batch])
    groups: dict[int, GroupWrite] = {}
    for seq, ev in batch:
        plan = plan_writes([ev], opts)
        ops: dict[int, list[str | int | float]] = {}
        for kind, table in (("l", plan.latest), ("i", plan.incr)):
            for key, members in table.items():
                group = group_of(key)
                write = groups.setdefault(group, GroupWrite())
                number = write.key_number(key)
                out = ops.setdefault(group, [])
                for member, value in members.items():
                    out += [kind, number, member, repr(float(value))]
        for key, limit in plan.limits.items():
            groups[group_of(key)].trims[key] = (limit, plan.ttls[key])
        for group, out in ops.items():
            groups[group].records += [seq, len(out) // 4, *out]
    return groups


@cache
def slot_tags() -> tuple[str, ...]:
    """For every cluster slot, a short hash tag that lands in it (built once, ~0.2 s)."""
    from redis.crc import key_slot

    tags: dict[int, str] = {}
    candidate = 0
    while len(tags) < CLUSTER_SLOTS:
        text = str(candidate)
        tags.setdefault(key_slot(text.encode()), text)
        candidate += 1
    return tuple(tags[slot] for slot in range(CLUSTER_SLOTS))

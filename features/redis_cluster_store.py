"""``redis+cluster://``: the feature store on a Redis Cluster, for more users than one Redis holds.

Why a separate backend and not just another client: on a cluster every multi-key command or script
must stay inside one hash slot. The layout (:mod:`features.layout`) hash-tags every per-user key with
the user id, so one user's state is still ONE script on ONE node. What crosses users is split:

* a feed's friends' purchase sets are read with one pipeline per node, concurrently with the user's
  script; a node that does not answer only costs the social proof of the friends on it;
* trending is partitioned by item (``trending_shards``, default 16 here) under hash tags that spread
  the partitions over the nodes; a read merges every partition's top k, skipping partitions whose
  node is down (the list is then missing those items, not wrong about the others);
* writes and batch reads are cluster pipelines (redis-py splits them per node).

So a dead primary degrades only the users whose slots it served: their reads raise
:class:`~features.errors.StoreUnavailable` (the feed degrades, as for a single Redis that is down),
everyone else is served in full. Run the cluster with ``cluster-require-full-coverage no``, or the
surviving primaries refuse every command once they mark the dead one as failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import exceptions as rexc
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from features.base import StoreEvent, UserState
from features.errors import StoreConfigError, StoreUnavailable
from features.layout import plan_writes, user_read_keys
from features.logged_writes import CLUSTER_SLOTS, slot_tags
from features.options import StoreOptions
from features.redis_store import FEED_STATE_LUA, USER_READ_REPLIES, RedisStore, _glob_escape, _id_set
from features.urls import StoreURL

log = logging.getLogger(__name__)

NODE_DOWN_S = 1.0
"""A node that failed is not asked again for this long (then one request tries it)."""
CLUSTER_TRENDING_SHARDS = 16
"""Default trending partitions on a cluster: enough to spread over a few dozen primaries."""


class _CommandTableOnce(AsyncCommandsParser):
    """redis-py's command table, read once, from any primary that answers.

    Why: redis-py re-reads ``COMMAND`` after every connection failure (each rediscovery), always from
    the primary that owns slot 0. While that one is dead, every rediscovery, and so every later
    command on every node, failed: one dead shard took the whole store down. The table never changes
    while a client lives, so reading it once is enough."""

    def __init__(self, primaries: Callable[[], list[ClusterNode]]) -> None:
        super().__init__()
        self._primaries = primaries

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if self.commands:
            return
        candidates = [n for n in [node, *self._primaries()] if n is not None]
        failure: Exception | None = None
        for candidate in candidates:
            try:
                await super().initialize(candidate)
                return
            except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                failure = exc
        if failure is not None:
            raise failure


class RedisClusterStore(RedisStore):
    def _connect(self, parsed: StoreURL, options: StoreOptions) -> Any:
        if "{" in options.prefix or "}" in options.prefix:
            raise StoreConfigError(
                f"store option prefix {options.prefix!r} for {parsed.redacted}: braces are not allowed on "
                "a cluster (they would become the hash tag of every key)"
            )
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
            username=parsed.username,
            password=parsed.password,
            require_full_coverage=False,
            max_connections=options.max_connections,
            socket_timeout=options.socket_timeout,
            socket_connect_timeout=options.socket_connect_timeout,
            retry=Retry(NoBackoff(), options.retries),
            health_check_interval=0,
        )
        client.commands_parser = _CommandTableOnce(client.get_primaries)
        self._down_until: dict[str, float] = {}
        """node name -> until when it is skipped (it failed; see _per_node_commands)"""
        return client

    async def _initialized(self) -> RedisCluster:
        """The client with its slot map loaded (discovery talks to the start-up nodes once)."""
        client: RedisCluster = self._redis
        if client._initialize:  # redis-py's flag: set before the first command and after a failure
            await self._call("cluster discovery", client.initialize)
        return client

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        """The user's seven keys in one script (one slot), friends' purchases per node, concurrently.

        Friends whose node does not answer count as having bought nothing: the page loses a little
        social proof but is not degraded for a failure on another user's shard."""
        gen, factor = self._affinity_clock.reader(time.time() if now is None else now)
        keys = list(user_read_keys(self._keys, user_id, gen))
        friend_keys = [self._bought_key(f) for f in friend_ids]
        # One pipeline per node for the user's script and the friends' reads together (a feed touches
        # each node once). EVAL, not EVALSHA: redis-py loads a missing script on EVERY primary, which
        # fails while one is down; the body is 200 bytes and Redis caches its compiled form.
        commands = [("EVAL", FEED_STATE_LUA, len(keys), *keys), *(("ZRANGE", k, 0, -1) for k in friend_keys)]
        own, *bought = await self._per_node_commands("feed_state", commands)
        if isinstance(own, BaseException):
            raise own
        flat = own[USER_READ_REPLIES - 1]
        state = self._user_from_replies(
            [*own[: USER_READ_REPLIES - 1], list(zip(flat[::2], flat[1::2], strict=True))], factor
        )
        return state, [set() if isinstance(m, BaseException) else _id_set(m) for m in bought]

    async def _trending_partitions(self, keys: list[str], k: int) -> list[list[tuple[int, float]]]:
        replies = await self._per_node_commands(
            "trending", [("ZREVRANGE", key, 0, k - 1, "WITHSCORES") for key in keys], withscores=True
        )
        if keys and all(isinstance(reply, BaseException) for reply in replies):
            raise StoreUnavailable(f"redis cluster {self.url}: no node holding trending answered")
        return [[] if isinstance(r, BaseException) else [(int(m), float(s)) for m, s in r] for r in replies]

    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        """The write plan as one pipeline per node; a node that does not answer fails the call after
        the other nodes applied their part (the replayer applies it again: use ``record_logged``)."""
        if not events:
            return
        plan = plan_writes(events, self.options)
        commands: list[tuple[Any, ...]] = []
        for key, latest in plan.latest.items():
            pairs = [x for m, ts in latest.items() for x in (repr(float(ts)), m)]
            commands.append(("ZADD", key, "GT", *pairs))
        for key, amounts in plan.incr.items():
            commands += [("ZINCRBY", key, repr(float(a)), m) for m, a in amounts.items()]
        for key, limit in plan.limits.items():
            commands.append(("ZREMRANGEBYRANK", key, 0, -(limit + 1)))
        for key, ttl in plan.ttls.items():
            commands.append(("EXPIRE", key, ttl))
        replies = await self._per_node_commands(f"record_events({len(events)} events)", commands)
        failed = [r for r in replies if isinstance(r, BaseException)]
        if failed:
            raise StoreUnavailable(f"{len(failed)} of {len(replies)} writes failed: {failed[0]}")

    async def _eval_each(
        self, what: str, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Each call on the node of its first key (all its keys share a slot), one pipeline per node."""
        commands = [("EVAL", script, len(keys), *keys, *args) for keys, args in calls]
        return await self._per_node_commands(what, commands)

    async def _per_node_commands(
        self, what: str, commands: Sequence[tuple[Any, ...]], **options: Any
    ) -> list[Any]:
        """Run each command (``(NAME, key, ...)``, or ``(EVAL, script, n, key, ...)``) on the node
        serving its (first) key: one pipeline per node, all nodes at once. A node that fails, or failed less
        than NODE_DOWN_S ago, is not waited for: its commands' replies are a StoreUnavailable (why:
        redis-py rediscovers the whole cluster after every failed command, and every request for a
        dead shard's users would pay for that)."""
        if not commands:
            return []
        client = await self._initialized()
        unavailable = StoreUnavailable(f"redis cluster {self.url}: node down during {what}")
        out: list[Any] = [unavailable] * len(commands)
        groups: dict[str, list[int]] = {}
        now = time.monotonic()
        for i, command in enumerate(commands):
            node = client.get_node_from_key(command[3] if command[0] == "EVAL" else command[1])
            if node is not None and self._down_until.get(node.name, 0.0) <= now:
                groups.setdefault(node.name, []).append(i)

        async def run(indices: list[int]) -> list[Any]:
            pipe = client.pipeline()
            for i in indices:
                pipe.execute_command(*commands[i], **options)
            replies = list(await self._call(what, lambda: pipe.execute(raise_on_error=False)))
            lost = next(
                (r for r in replies if isinstance(r, (rexc.ConnectionError, rexc.TimeoutError))), None
            )
            if lost is not None:  # the node went away mid-pipeline
                raise StoreUnavailable(f"redis cluster {self.url} during {what}: {self._scrub(str(lost))}")
            return replies

        results = await asyncio.gather(*(run(ix) for ix in groups.values()), return_exceptions=True)
        for (name, indices), result in zip(groups.items(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, StoreUnavailable):
                    raise result
                self._mark_down(name, result)
                for i in indices:
                    out[i] = result
                continue
            for i, reply in zip(indices, result, strict=True):
                out[i] = reply
        return out

    async def record_logged(
        self, log_id: int, batch: Sequence[tuple[int, StoreEvent]], rebuilding: bool = False
    ) -> None:
        """As on one Redis, but refused at once while a node is known to be down: replay goes in log
        order, so the batch would stop at that node anyway, and planning a 500-event batch only to
        fail held the event loop (and every feed) for tens of ms, several times a second."""
        down = self._nodes_down()
        if down:
            raise StoreUnavailable(
                f"redis cluster {self.url}: node {down[0]} is down; logged batch left pending"
            )
        await super().record_logged(log_id, batch, rebuilding)

    def _nodes_down(self) -> list[str]:
        now = time.monotonic()
        return [name for name, until in self._down_until.items() if until > now]

    def _mark_down(self, name: str, why: Exception) -> None:
        if self._down_until.get(name, 0.0) <= time.monotonic():
            log.warning(
                "redis cluster node %s did not answer; skipped for %.1f s: %s", name, NODE_DOWN_S, why
            )
        self._down_until[name] = time.monotonic() + NODE_DOWN_S

    # -- exactly-once: one position per (log, slot); see features/logged_writes.py ---------------
    def _position_key(self, log_id: int, group: int) -> str:
        return f"{self.options.prefix}log:{{{slot_tags()[group]}}}:{log_id}"

    def _group_of(self, key: str) -> int:
        return int(key_slot(key.encode()))

    async def log_intact(self, log_id: int) -> bool:
        """One slot per primary is enough: a primary that restarted empty lost all its slots."""
        client = await self._initialized()
        probes: dict[str, int] = {}
        for slot, nodes in sorted(client.nodes_manager.slots_cache.items()):
            if nodes:
                probes.setdefault(nodes[0].name, slot)
        commands = [("EXISTS", self._position_key(log_id, slot)) for slot in probes.values()]
        replies = await self._per_node_commands("log_intact", commands)
        failed = next((r for r in replies if isinstance(r, BaseException)), None)
        if failed is not None:
            raise StoreUnavailable(
                f"redis cluster {self.url}: cannot tell whether it holds log {log_id}: {failed}"
            )
        return all(replies)

    async def seal_log(self, log_id: int, seq: int) -> None:
        commands = [("SET", self._position_key(log_id, slot), seq, "NX") for slot in range(CLUSTER_SLOTS)]
        replies = await self._per_node_commands("seal_log", commands)
        failed = next((r for r in replies if isinstance(r, BaseException)), None)
        if failed is not None:
            raise StoreUnavailable(f"redis cluster {self.url}: log {log_id} not sealed everywhere: {failed}")

    async def ping(self) -> bool:
        """True when at least one primary answers: a dead shard degrades its users, it does not make
        the whole store (and every replica's readiness) fail."""
        try:
            client = await self._initialized()
        except StoreUnavailable:
            return False

        async def one(node: ClusterNode) -> bool:
            try:
                return bool(await self._call("ping", lambda: client.ping(target_nodes=node)))
            except StoreUnavailable:
                return False

        answers = await asyncio.gather(*(one(n) for n in client.get_primaries()))
        return any(answers)

    async def clear(self) -> None:
        """Remove this store's keys on every primary (SCAN MATCH prefix* + UNLINK per key), except
        announcements."""
        client = await self._initialized()
        pattern = _glob_escape(self.options.prefix) + "*"
        kept = self._keys.announcement("").encode()

        async def run() -> None:
            for node in client.get_primaries():
                keys = [
                    key
                    async for key in client.scan_iter(match=pattern, count=1000, target_nodes=node)
                    if not key.startswith(kept)
                ]
                for start in range(0, len(keys), 500):
                    pipe = client.pipeline()
                    for key in keys[start : start + 500]:
                        pipe.execute_command("UNLINK", key)
                    await pipe.execute()

        await self._call("clear", run)

    async def close(self) -> None:
        await self._redis.aclose()

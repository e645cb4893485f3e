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
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from features.base import UserState
from features.errors import StoreConfigError, StoreUnavailable
from features.layout import user_read_keys
from features.logged_writes import CLUSTER_SLOTS, slot_tags
from features.options import StoreOptions
from features.redis_store import FEED_STATE_LUA, USER_READ_REPLIES, RedisStore, _glob_escape, _id_set
from features.urls import StoreURL

log = logging.getLogger(__name__)

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

        async def run() -> list[Any]:
            # EVAL, not EVALSHA: redis-py loads a missing script on EVERY primary, which fails
            # while one is down; the body is 200 bytes and Redis caches its compiled form.
            return list(await self._redis.eval(FEED_STATE_LUA, len(keys), *keys))

        friend_keys = [self._bought_key(f) for f in friend_ids]
        own, bought = await asyncio.gather(
            self._call("feed_state", run),
            self._read_per_node(friend_keys, lambda pipe, key: pipe.zrange(key, 0, -1)),
        )
        flat = own[USER_READ_REPLIES - 1]
        state = self._user_from_replies(
            [*own[: USER_READ_REPLIES - 1], list(zip(flat[::2], flat[1::2], strict=True))], factor
        )
        return state, [set() if members is None else _id_set(members) for members in bought]

    async def _trending_partitions(self, keys: list[str], k: int) -> list[list[tuple[int, float]]]:
        replies = await self._read_per_node(
            keys, lambda pipe, key: pipe.zrevrange(key, 0, k - 1, withscores=True)
        )
        if keys and all(reply is None for reply in replies):
            raise StoreUnavailable(f"redis cluster {self.url}: no node holding trending answered")
        return [[(int(m), float(s)) for m, s in reply or ()] for reply in replies]

    async def _read_per_node(
        self, keys: Sequence[str], queue: Callable[[ClusterPipeline, str], object]
    ) -> list[Any | None]:
        """One read command per key, one pipeline per node, all nodes at once; ``None`` for the keys
        of a node that did not answer (logged), so one dead shard does not fail the whole read."""
        if not keys:
            return []
        client = await self._initialized()
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            node = client.get_node_from_key(key)
            if node is not None:  # a slot no node serves stays None
                groups.setdefault(node.name, []).append(i)

        async def run(indices: list[int]) -> list[Any]:
            pipe = client.pipeline()
            for i in indices:
                queue(pipe, keys[i])
            return list(await self._call(f"read of {len(indices)} keys", pipe.execute))

        results = await asyncio.gather(*(run(ix) for ix in groups.values()), return_exceptions=True)
        out: list[Any | None] = [None] * len(keys)
        for (name, indices), result in zip(groups.items(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, StoreUnavailable):
                    raise result
                log.warning("redis cluster node %s did not answer a read: %s", name, result)
                continue
            for i, reply in zip(indices, result, strict=True):
                out[i] = reply
        return out

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

        async def run() -> list[Any]:
            pipe = client.pipeline()
            for slot in probes.values():
                pipe.exists(self._position_key(log_id, slot))
            return list(await pipe.execute())

        return all(await self._call("log_intact", run))

    async def seal_log(self, log_id: int, seq: int) -> None:
        client = await self._initialized()

        async def run() -> None:
            for start in range(0, CLUSTER_SLOTS, 2048):
                pipe = client.pipeline()
                for slot in range(start, start + 2048):
                    pipe.set(self._position_key(log_id, slot), seq, nx=True)
                await pipe.execute()

        await self._call("seal_log", run)

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

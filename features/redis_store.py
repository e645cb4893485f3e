"""``redis://``: the shared online store for several serving replicas (redis.asyncio).

Key layout: see :mod:`features.layout` (sorted sets under a prefix, default ``kf:``, so several
services and test runs can share one server). Decayed scores (live KOL affinity, trending) use the
exponential-decay trick with generations described in :mod:`features.decay`, so every write is a
plain ``ZADD GT`` / ``ZINCRBY`` and a batch of events is ONE pipeline, and a batch read of many
users is ONE pipeline too (``transaction=False``: no MULTI, works on Redis Cluster clients as well).

Every call runs with short socket timeouts and at most ``retries`` immediate retries; any failure to
reach Redis becomes :class:`~features.errors.StoreUnavailable` so the service can degrade. The
password is only handed to the connection pool; ``url``/``repr`` show the redacted URL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from features.base import StoreEvent, UserState
from features.decay import DecayClock
from features.errors import StoreAuthError, StoreDataLost, StoreError, StoreUnavailable
from features.layout import assemble, layout_of, merge_top, plan_writes, raw_user_read, user_read_keys
from features.logged_writes import LOGGED_APPLY_LUA, group_writes
from features.options import StoreOptions
from features.urls import StoreURL

T = TypeVar("T")
CLEAR_BATCH = 500
_GLOB_SPECIAL = "\\*?[]"
USER_READ_REPLIES = 7
"""Commands (and replies) per user in a state read: six member lists and the affinity pairs."""

FEED_STATE_LUA = """
local out = {}
for i = 1, 6 do out[i] = redis.call('ZREVRANGE', KEYS[i], 0, -1) end
out[7] = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
for i = 8, #KEYS do out[i] = redis.call('ZRANGE', KEYS[i], 0, -1) end
return out
"""
"""``feed_state`` in one script: the reads ``_queue_user_read`` and ``_queue_bought_read`` queue, in
the same order (KEYS = the user's read keys, then each friend's purchases); read-only."""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def _id_set(members: Sequence[bytes]) -> set[int]:
    return {int(m) for m in members}


class RedisStore:
    def __init__(self, parsed: StoreURL, options: StoreOptions) -> None:
        self.url = parsed.redacted
        self.options = options
        self._password = parsed.password
        self._keys = layout_of(options)
        self._affinity_clock = DecayClock(options.affinity_half_life_s)
        self._trend_clock = DecayClock(options.trending_half_life_s)
        self._redis = self._connect(parsed, options)
        self._feed_state_script = self._redis.register_script(FEED_STATE_LUA)

    def _connect(self, parsed: StoreURL, options: StoreOptions) -> Any:
        """The client (created without connecting); the cluster store returns a cluster client."""
        pool = BlockingConnectionPool(
            connection_class=SSLConnection if parsed.scheme == "rediss" else Connection,
            max_connections=options.max_connections,
            timeout=options.pool_timeout,
            host=parsed.host,
            port=parsed.port,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            socket_timeout=options.socket_timeout,
            socket_connect_timeout=options.socket_connect_timeout,
            retry=Retry(NoBackoff(), options.retries),
            retry_on_error=[],
            health_check_interval=0,
        )
        return aioredis.Redis(connection_pool=pool)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, prefix={self.options.prefix!r})"

    __str__ = __repr__

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis interaction, turning every way it can fail into the store's errors."""
        try:
            return await fn()
        except StoreError:
            raise
        except rexc.AuthenticationError as exc:
            raise StoreAuthError(
                f"redis authentication failed for {self.url} during {what} "
                f"(check the user/password in the store URL): {self._scrub(str(exc))}"
            ) from None
        except (rexc.ConnectionError, rexc.TimeoutError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            raise StoreUnavailable(f"redis unavailable at {self.url} during {what}: {reason}") from None
        except RuntimeError as exc:
            # uvloop: a connection whose socket the server just closed (Redis going down) raises
            # RuntimeError("unable to perform operation on <TCPTransport closed=True ...>")
            if not _closed_transport(exc):
                raise
            raise StoreUnavailable(
                f"redis unavailable at {self.url} during {what}: connection closed"
            ) from None
        except rexc.RedisError as exc:
            msg = self._scrub(str(exc))
            if "NOAUTH" in msg or "WRONGPASS" in msg:
                raise StoreAuthError(
                    f"redis authentication failed for {self.url} during {what}: {msg}"
                ) from None
            raise StoreUnavailable(
                f"redis error at {self.url} during {what}: {type(exc).__name__}: {msg}"
            ) from None

    # -- writes ----------------------------------------------------------------------------------
    async def record_events(self, events: Sequence[StoreEvent]) -> None:
        if not events:
            return
        plan = plan_writes(events, self.options)
        pipe = self._redis.pipeline(transaction=False)
        for key, latest in plan.latest.items():
            pipe.zadd(key, {str(m): ts for m, ts in latest.items()}, gt=True)
        for key, amounts in plan.incr.items():
            for member, amount in amounts.items():
                pipe.zincrby(key, amount, str(member))
        for key, limit in plan.limits.items():
            pipe.zremrangebyrank(key, 0, -(limit + 1))
        for key, ttl in plan.ttls.items():
            pipe.expire(key, ttl)
        await self._call(f"record_events({len(events)} events)", pipe.execute)

    # -- reads -----------------------------------------------------------------------------------
    async def user_state(self, user_id: int, now: float | None = None) -> UserState:
        return (await self.user_states([user_id], now))[0]

    async def user_states(self, user_ids: Sequence[int], now: float | None = None) -> list[UserState]:
        if not user_ids:
            return []
        gen, factor = self._affinity_clock.reader(time.time() if now is None else now)
        pipe = self._redis.pipeline(transaction=False)
        for uid in user_ids:
            self._queue_user_read(pipe, uid, gen)
        replies: list[Any] = await self._call(f"user_states({len(user_ids)} users)", pipe.execute)
        return [
            self._user_from_replies(replies[i : i + USER_READ_REPLIES], factor)
            for i in range(0, len(replies), USER_READ_REPLIES)
        ]

    async def bought_by(self, user_ids: Sequence[int]) -> list[set[int]]:
        if not user_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for uid in user_ids:
            self._queue_bought_read(pipe, uid)
        replies: list[Any] = await self._call(f"bought_by({len(user_ids)} users)", pipe.execute)
        return [_id_set(members) for members in replies]

    async def feed_state(
        self, user_id: int, friend_ids: Sequence[int], now: float | None = None
    ) -> tuple[UserState, list[set[int]]]:
        """One server-side script reads the user's seven keys and each friend's purchases.

        Why a script and not a pipeline of the same reads: a feed reads ~27 keys, and redis-py spends
        more per command (packing, a response callback, a reply read) than Redis does; one EVALSHA
        with all keys costs the client one command. Like the pipeline it is one round trip and one
        consistent snapshot. The keys span users, so it needs a single Redis (not a Cluster)."""
        gen, factor = self._affinity_clock.reader(time.time() if now is None else now)
        keys = [*user_read_keys(self._keys, user_id, gen), *map(self._bought_key, friend_ids)]

        async def run() -> list[Any]:
            return list(await self._feed_state_script(keys=keys))

        replies = await self._call("feed_state", run)
        flat = replies[USER_READ_REPLIES - 1]  # the affinity read: member, score, member, score, ...
        state = self._user_from_replies(
            [*replies[: USER_READ_REPLIES - 1], list(zip(flat[::2], flat[1::2], strict=True))], factor
        )
        return state, [_id_set(members) for members in replies[USER_READ_REPLIES:]]

    # -- read helpers: what one read queues on a pipeline, and how its replies are parsed ----------
    def _queue_user_read(self, pipe: Pipeline, user_id: int, affinity_gen: int) -> None:
        """Queue the USER_READ_REPLIES commands reading one user's state (order of user_read_keys)."""
        keys = user_read_keys(self._keys, user_id, affinity_gen)
        for key in keys[:6]:
            pipe.zrevrange(key, 0, -1)
        pipe.zrange(keys[6], 0, -1, withscores=True)

    def _user_from_replies(self, replies: Sequence[Any], affinity_factor: float) -> UserState:
        lists = [[int(m) for m in members] for members in replies[:6]]
        raw = raw_user_read(lists, [(int(m), float(s)) for m, s in replies[6]])
        return assemble(raw, affinity_factor, self.options.recent_limit)

    def _bought_key(self, user_id: int) -> str:
        """The user's purchases, as ``bought_by`` and ``feed_state`` read them."""
        return self._keys.user(user_id, "buys")

    def _queue_bought_read(self, pipe: Pipeline, user_id: int) -> None:
        pipe.zrange(self._bought_key(user_id), 0, -1)

    async def trending(
        self, k: int, category: str | None = None, now: float | None = None
    ) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        gen, factor = self._trend_clock.reader(time.time() if now is None else now)
        parts = await self._trending_partitions(self._keys.trending_partitions(category, gen), k)
        top = parts[0] if len(parts) == 1 else merge_top(parts, k)
        return [(item, score * factor) for item, score in top]

    async def _trending_partitions(self, keys: list[str], k: int) -> list[list[tuple[int, float]]]:
        """The top k of each trending partition (one pipeline; one command when unsharded)."""

        async def fetch() -> list[Any]:
            if len(keys) == 1:
                return [await self._redis.zrevrange(keys[0], 0, k - 1, withscores=True)]
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrevrange(key, 0, k - 1, withscores=True)
            return list(await pipe.execute())

        replies = await self._call("trending", fetch)
        return [[(int(m), float(s)) for m, s in reply] for reply in replies]

    # -- exactly-once application of logged events (features/logged_writes.py) --------------------
    def _position_key(self, log_id: int, group: int) -> str:
        """Where group ``group`` keeps log ``log_id``'s position (one group on a single Redis)."""
        return f"{self.options.prefix}log:{log_id}"

    def _group_of(self, key: str) -> int:
        return 0

    async def record_logged(
        self, log_id: int, batch: Sequence[tuple[int, StoreEvent]], rebuilding: bool = False
    ) -> None:
        if not batch:
            return
        groups = group_writes(batch, self.options, self._group_of)
        last = max(seq for seq, _ in batch)

        calls = [
            ([self._position_key(log_id, group), *write.keys], write.args(rebuilding, last))
            for group, write in groups.items()
        ]
        replies = await self._eval_each(f"record_logged({len(batch)} events)", LOGGED_APPLY_LUA, calls)
        failures = [r for r in replies if isinstance(r, BaseException)]
        if failures:
            raise StoreUnavailable(
                f"redis at {self.url}: {len(failures)} of {len(replies)} slot groups did not apply "
                f"a logged batch (the others did, exactly once): {self._scrub(str(failures[0]))}"
            )
        if any(r == -1 for r in replies):
            raise StoreDataLost(
                f"redis at {self.url} lost the position of event log {log_id} (restarted empty?): "
                "the log must be replayed"
            )

    async def _eval_each(
        self, what: str, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, args), pipelined; a failed call's reply is its exception."""

        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.eval(script, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

        return await self._call(what, run)

    async def log_intact(self, log_id: int) -> bool:
        key = self._position_key(log_id, 0)

        async def run() -> int:
            return int(await self._redis.exists(key))

        return bool(await self._call("log_intact", run))

    async def seal_log(self, log_id: int, seq: int) -> None:
        key = self._position_key(log_id, 0)

        async def run() -> None:
            await self._redis.set(key, seq, nx=True)

        await self._call("seal_log", run)

    async def announce(self, name: str, value: str) -> None:
        key = self._keys.announcement(name)

        async def run() -> None:
            await self._redis.set(key, value)

        await self._call(f"announce({name})", run)

    async def announced(self, name: str) -> str | None:
        key = self._keys.announcement(name)

        async def run() -> bytes | None:
            value: bytes | None = await self._redis.get(key)
            return value

        raw = await self._call(f"announced({name})", run)
        return None if raw is None else raw.decode()

    # -- admin -----------------------------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            return bool(await self._call("ping", self._ping))
        except Exception:
            return False

    async def _ping(self) -> bool:
        return bool(await self._redis.ping())

    async def clear(self) -> None:
        """Remove this store's keys only (SCAN MATCH prefix* + UNLINK); never FLUSHDB/FLUSHALL.
        Announcements stay."""
        pattern = _glob_escape(self.options.prefix) + "*"
        kept = self._keys.announcement("").encode()

        async def run() -> None:
            batch: list[Any] = []
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                if key.startswith(kept):
                    continue
                batch.append(key)
                if len(batch) >= CLEAR_BATCH:
                    await self._redis.unlink(*batch)
                    batch = []
            if batch:
                await self._redis.unlink(*batch)

        await self._call("clear", run)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()


def _closed_transport(exc: RuntimeError) -> bool:
    """uvloop's error for writing to a connection that was closed under us (not a bug of ours)."""
    text = str(exc)
    return "unable to perform operation on" in text and "closed" in text

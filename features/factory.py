"""Open a feature store from a URL: ``memory://`` (embedded default), ``redis://`` / ``rediss://``
(one Redis) or ``redis+cluster://`` (a Redis Cluster).

An explicit registry of schemes; the Redis client is imported only when a Redis URL is opened.
"""

from __future__ import annotations

from typing import Any

from features.base import FeatureStore
from features.options import StoreOptions, parse_options
from features.urls import CLUSTER_SCHEME, parse_store_url, redact_url

__all__ = ["open_store", "redact_url"]


def _open_memory(url: str, options: StoreOptions) -> FeatureStore:
    from features.memory import MemoryStore

    return MemoryStore(url, options)


def open_store(url: str, **options: Any) -> FeatureStore:
    """A store for ``url``; options (see :class:`features.options.StoreOptions`) come from keyword
    arguments and the URL query string. Raises :class:`~features.errors.StoreConfigError` on a bad URL
    or option. Opening does not connect: use ``await store.ping()`` for readiness."""
    parsed = parse_store_url(url)
    if parsed.scheme == CLUSTER_SCHEME:
        from features.redis_cluster_store import CLUSTER_TRENDING_SHARDS, RedisClusterStore

        defaults = {"trending_shards": CLUSTER_TRENDING_SHARDS}
        return RedisClusterStore(
            parsed, parse_options({**defaults, **parsed.options, **options}, parsed.redacted)
        )
    opts = parse_options({**parsed.options, **options}, parsed.redacted)
    if parsed.scheme == "memory":
        return _open_memory(parsed.redacted, opts)
    from features.redis_store import RedisStore

    return RedisStore(parsed, opts)

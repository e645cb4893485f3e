"""Parsing and redacting store URLs, so that a password never reaches a log line or an error.

Accepted forms: ``memory://``, ``redis://[[user]:password@]host[:port][/db][?option=value...]``
(``rediss://`` for TLS) and ``redis+cluster://[[user]:password@]host:port[,host:port...][/][?option=value...]``
(a Redis Cluster: the listed nodes are only where discovery starts; a cluster has no databases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from features.errors import StoreConfigError

SCHEMES = ("memory", "redis", "rediss", "redis+cluster")
CLUSTER_SCHEME = "redis+cluster"
DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True, repr=False)
class StoreURL:
    scheme: str
    host: str = ""
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    redacted: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    """Cluster start-up nodes (``redis+cluster://``); for other schemes just ``((host, port),)``."""

    def __repr__(self) -> str:
        return f"StoreURL({self.redacted!r})"

    __str__ = __repr__


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (also for URLs we could not parse).

    Everything before the last ``@`` counts as user info, so a password holding an unescaped
    ``/``, ``?`` or ``@`` is still hidden (over-redacting a query that holds ``@`` is harmless).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else "<unparseable store url>"
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"


def parse_store_url(url: str) -> StoreURL:
    redacted = redact_url(url)
    if not isinstance(url, str) or "://" not in url:
        raise StoreConfigError(
            f"store URL {redacted!r} has no scheme; expected memory:// or redis://host:port/db"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StoreConfigError(
            f"unknown store scheme {scheme!r} in {redacted!r}; expected one of: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if parts.fragment:
        raise StoreConfigError(f"store URL {redacted!r} must not have a #fragment")
    options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise StoreConfigError(f"memory store URL takes no host or path, got {redacted!r}; use memory://")
        return StoreURL(scheme, host="", port=0, options=options, redacted=redacted)
    if scheme == CLUSTER_SCHEME:
        return _parse_cluster_url(parts.netloc, parts.path, options, redacted)
    try:
        port = parts.port
    except ValueError:
        raise StoreConfigError(f"bad port in store URL {redacted!r}; expected an integer 1-65535") from None
    host = parts.hostname or ""
    if not host:
        raise StoreConfigError(f"store URL {redacted!r} has no host; expected redis://host:port/db")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StoreConfigError(
            f"bad database {path!r} in store URL {redacted!r}; expected an integer like /0"
        )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return StoreURL(
        scheme,
        host=host,
        port=port if port is not None else DEFAULT_REDIS_PORT,
        db=int(path) if path else 0,
        username=username,
        password=password,
        options=options,
        redacted=redacted,
        nodes=((host, port if port is not None else DEFAULT_REDIS_PORT),),
    )


def _parse_cluster_url(netloc: str, path: str, options: dict[str, str], redacted: str) -> StoreURL:
    """``[user[:password]@]host:port[,host:port...]``: urlsplit cannot parse several hosts itself."""
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if path.strip("/"):
        raise StoreConfigError(
            f"store URL {redacted!r}: a Redis Cluster has no databases; drop the path {path!r}"
        )
    nodes: list[tuple[str, int]] = []
    for entry in hostlist.split(","):
        host, colon, port_text = entry.strip().rpartition(":")
        if not colon:
            host, port_text = entry.strip(), str(DEFAULT_REDIS_PORT)
        host = host.strip("[]")
        if not host:
            raise StoreConfigError(
                f"store URL {redacted!r} has an empty node; expected redis+cluster://host:port[,host:port...]"
            )
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise StoreConfigError(
                f"bad port {port_text!r} of node {host!r} in store URL {redacted!r}; "
                "expected an integer 1-65535"
            )
        nodes.append((host, int(port_text)))
    first_host, first_port = nodes[0]
    return StoreURL(
        CLUSTER_SCHEME,
        host=first_host,
        port=first_port,
        db=0,
        username=username,
        password=password,
        options=options,
        redacted=redacted,
        nodes=tuple(nodes),
    )

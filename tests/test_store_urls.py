"""Store URLs, options, failure modes (unreachable, authentication) and the `kolfeed store` CLI."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from features.base import StoreEvent
from features.errors import StoreAuthError, StoreConfigError, StoreUnavailable
from features.factory import open_store, redact_url
from features.urls import parse_store_url
from tests.conftest import redis_answers

NOBODY_PORT = 6390  # nothing listens here


def test_password_url_parsed_and_redacted() -> None:
    parsed = parse_store_url("redis://:s3cret@10.0.0.5:6380/3?prefix=kf:svc:")
    assert (parsed.host, parsed.port, parsed.db, parsed.password) == ("10.0.0.5", 6380, 3, "s3cret")
    assert parsed.options == {"prefix": "kf:svc:"}
    assert redact_url("redis://:s3cret@10.0.0.5:6380/3") == "redis://:***@10.0.0.5:6380/3"
    assert redact_url("redis://bob:s3cret@h:1/0") == "redis://bob:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert "s3cret" not in repr(parsed) and "s3cret" not in str(parsed)
    user = parse_store_url("rediss://bob:p%40ss@h/0")
    assert (user.scheme, user.username, user.password, user.port) == ("rediss", "bob", "p@ss", 6379)


def test_store_repr_and_url_hide_password() -> None:
    store = open_store("redis://:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(store) and "s3cret" not in str(store) and "s3cret" not in store.url
    assert store.url == "redis://:***@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/0", "unknown store scheme 'mysql'"),
        ("127.0.0.1:6379", "has no scheme"),
        ("redis://:pw@h:notaport/0", "bad port"),
        ("redis://:pw@h:6379/zero", "bad database 'zero'"),
        ("redis:///0", "has no host"),
        ("memory://somewhere", "memory store URL takes no host"),
    ],
)
def test_bad_urls_give_clear_errors_without_password(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as info:
        open_store(url)
    assert ":pw@" not in str(info.value)


def test_options_from_query_and_kwargs_and_unknown_keys_named() -> None:
    store = open_store("memory://?prefix=kf:q:&recent_limit=5", recent_limit=7)
    assert store.options.prefix == "kf:q:" and store.options.recent_limit == 7  # type: ignore[attr-defined]
    with pytest.raises(StoreConfigError, match="recnt_limit: unknown option"):
        open_store("memory://", recnt_limit=3)
    with pytest.raises(StoreConfigError, match="socket_timeout") as info:
        open_store("redis://:hunter2@h/0?socket_timeout=-1")
    assert "hunter2" not in str(info.value)


async def test_unreachable_redis_raises_store_unavailable_promptly() -> None:
    store = open_store(f"redis://:hunter2@127.0.0.1:{NOBODY_PORT}/0")  # default (short) timeouts
    try:
        assert await store.ping() is False
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            await store.user_states([1, 2])
        assert time.monotonic() - start < 5.0
        assert "hunter2" not in str(info.value) and str(NOBODY_PORT) in str(info.value)
        with pytest.raises(StoreUnavailable):
            await store.record_events([StoreEvent(ts=1.0, user_id=1, item_id=2, action="click")])
        with pytest.raises(StoreUnavailable):
            await store.trending(5)
    finally:
        await store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def password_redis() -> Iterator[int]:
    """A private redis-server with `--requirepass secret` on a free port, stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            "secret",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(port, password="secret"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"private redis-server on port {port} did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.redis
async def test_password_protected_redis(password_redis: int) -> None:
    port = password_redis
    good = open_store(f"redis://:secret@127.0.0.1:{port}/0", socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        assert await good.ping() is True
        await good.record_events([StoreEvent(ts=10.0, user_id=1, item_id=2, action="buy")])
        assert (await good.user_state(1, now=10.0)).bought == {2}
    finally:
        await good.close()

    for url in (f"redis://:wrongpass@127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0"):
        bad = open_store(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            assert await bad.ping() is False
            with pytest.raises(StoreAuthError, match="authentication failed") as info:
                await bad.user_state(1)
            assert "wrongpass" not in str(info.value)
            assert isinstance(info.value, StoreUnavailable) and isinstance(info.value, StoreConfigError)
        finally:
            await bad.close()


def test_cli_store_ping() -> None:
    from kolfeed.cli import _register, app

    _register()
    runner = CliRunner()
    ok = runner.invoke(app, ["store", "ping", "--store", "memory://"])
    assert ok.exit_code == 0 and "ok memory://" in ok.output
    down = runner.invoke(app, ["store", "ping", "--store", f"redis://:hunter2@127.0.0.1:{NOBODY_PORT}/0"])
    assert down.exit_code == 1 and "unavailable" in down.output and "hunter2" not in down.output
    bad = runner.invoke(app, ["store", "ping", "--store", "mongo://x"])
    assert bad.exit_code == 1 and "unknown store scheme" in bad.output


async def test_a_connection_closed_under_uvloop_is_an_outage_not_a_bug() -> None:
    from features.errors import StoreUnavailable
    from features.factory import open_store

    store = open_store("redis://127.0.0.1:1/0")

    async def closed() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    async def bug() -> None:
        raise RuntimeError("something else")

    try:
        with pytest.raises(StoreUnavailable, match="connection closed"):
            await store._call("feed_state", closed)  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match="something else"):
            await store._call("feed_state", bug)  # type: ignore[attr-defined]
    finally:
        await store.close()

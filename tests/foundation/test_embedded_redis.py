"""The development Redis starts on a port of its own, even when the one it chose gets taken
before the server binds it (two `make run`s, or a test run beside a dev stack)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import app.embedded_redis as embedded_redis
from app.embedded_redis import EmbeddedRedis


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_port_taken_before_the_start_is_replaced_by_another(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([taken_port])
    choose = embedded_redis._os_assigned_port
    # The race, made certain: the first port handed out is one that another process holds.
    monkeypatch.setattr(embedded_redis, "_os_assigned_port", lambda: next(ports, None) or choose())
    server = EmbeddedRedis().start()
    try:
        assert server.port != taken_port
        assert server.is_running()
    finally:
        server.stop()


def test_two_servers_get_two_ports() -> None:
    first, second = EmbeddedRedis().start(), EmbeddedRedis().start()
    try:
        assert first.port != second.port
        assert first.is_running()
        assert second.is_running()
    finally:
        first.stop()
        second.stop()

"""The suite's own helpers: ports, waits, per-worker Redis databases, the fake clock."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest

from tests.clock import FakeClock
from tests.ports import reserve_port
from tests.redis_server import database_for_worker
from tests.waiting import WaitTimeout, wait_until


@pytest.mark.parametrize(
    ("url", "index", "expected"),
    [
        ("redis://127.0.0.1:6379/13", 0, "redis://127.0.0.1:6379/13"),
        ("redis://127.0.0.1:6379/13", 1, "redis://127.0.0.1:6379/14"),
        ("redis://127.0.0.1:6379", 1, "redis://127.0.0.1:6379/1"),
        (
            "rediss://:pw@redis.example:6380/2?timeout=3",
            2,
            "rediss://:pw@redis.example:6380/4?timeout=3",
        ),
    ],
)
def test_each_worker_has_a_database_of_its_own(url: str, index: int, expected: str) -> None:
    assert database_for_worker(url, index) == expected


def test_a_reserved_port_is_no_one_elses_until_released() -> None:
    with reserve_port() as reservation:
        others = [reserve_port() for _ in range(50)]
        assert reservation.port not in {other.port for other in others}
        for other in others:
            other.release()
        with socket.socket() as intruder, pytest.raises(OSError, match="in use"):
            intruder.bind(("127.0.0.1", reservation.port))
    with socket.socket() as later:
        later.bind(("127.0.0.1", reservation.port))


def test_a_wait_returns_what_the_condition_found() -> None:
    answers = iter([None, [], ["ready"]])
    assert wait_until(lambda: next(answers), what="an answer", interval=0) == ["ready"]


def test_a_wait_that_times_out_says_what_it_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WAIT_SCALE", "1")
    with pytest.raises(WaitTimeout, match=r"waiting for the moon\nstill dark"):
        wait_until(lambda: False, what="the moon", timeout=0, detail=lambda: "still dark")


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    now, monotonic = clock.now(), clock.monotonic()
    assert (clock.now(), clock.monotonic()) == (now, monotonic)
    clock.advance(90)
    assert clock.now() - now == timedelta(seconds=90)
    assert clock.monotonic() - monotonic == 90


async def test_a_fake_sleep_ends_once_the_clock_has_moved_past_its_end() -> None:
    clock = FakeClock()
    sleeping = asyncio.ensure_future(clock.sleep(10))
    await asyncio.sleep(0)
    assert clock.sleeping == 1
    clock.advance(9.5)
    await asyncio.sleep(0)
    assert not sleeping.done()
    clock.advance(0.5)
    await sleeping  # woken by the move, not by time passing
    assert clock.sleeping == 0

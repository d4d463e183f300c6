"""The Flinks client as the app builds it: breaker state in /metrics, deadlines from settings."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from app.main import create_app
from app.settings import Settings
from tests.clock import FakeClock
from tests.conftest import issue_session, make_settings, serve_in_process


def flinks_at(redis_url: str, api_url: str, **overrides: object) -> Settings:
    return make_settings(
        redis_url,
        FLINKS_API_URL=api_url,
        FLINKS_CUSTOMER_ID="43387ca6-0391-4c82-857d-70d95f087ecb",
        FLINKS_SECRET_KEY="secret-canary-5d1c0a77",
        **overrides,
    )


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that is bound but not listening: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_the_breaker_state_and_its_refusals_are_in_metrics(
    redis_url: str, redis: object, refusing_port: int
) -> None:
    clock = FakeClock()
    settings = flinks_at(
        redis_url,
        f"http://127.0.0.1:{refusing_port}",
        FLINKS_BREAKER_FAILURES=1,
        FLINKS_BREAKER_RESET=10,
    )
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        await issue_session(client, redis_url)
        before = (await client.get("/metrics")).text
        assert metric(before, "flinks_breaker_state") == 0
        assert metric(before, "flinks_breaker_refused_total") == 0

        # The first mint is refused a connection and opens the circuit; its retry is refused.
        minted = await client.post("/v1/authorize-tokens", json={})
        assert minted.status_code == 503
        assert minted.json()["code"] == "flinks_unavailable"
        opened = (await client.get("/metrics")).text
        assert metric(opened, "flinks_breaker_state") == 1
        assert metric(opened, "flinks_breaker_refused_total") == 1

        assert (await client.post("/v1/authorize-tokens", json={})).status_code == 503
        assert metric((await client.get("/metrics")).text, "flinks_breaker_refused_total") == 2

        clock.advance(10)
        assert metric((await client.get("/metrics")).text, "flinks_breaker_state") == 2


@pytest.fixture
async def silent_flinks() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A real server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", held
        for writer in held:
            writer.close()


async def test_flinks_deadline_bounds_a_request_whatever_the_retries(
    redis_url: str, redis: object, silent_flinks: tuple[str, list[asyncio.StreamWriter]]
) -> None:
    url, connections = silent_flinks
    settings = flinks_at(redis_url, url, FLINKS_TIMEOUT=5, FLINKS_DEADLINE=0.5)
    async with serve_in_process(create_app(settings)) as client:
        await issue_session(client, redis_url)
        started = time.monotonic()
        minted = await client.post("/v1/authorize-tokens", json={})
        elapsed = time.monotonic() - started

    assert minted.status_code == 504
    assert minted.json()["code"] == "flinks_timeout"
    # One attempt and no retry that could not finish; before, three of 5 s each (15 s).
    assert len(connections) == 1
    assert elapsed < 5  # generous: the deadline is a tenth of it

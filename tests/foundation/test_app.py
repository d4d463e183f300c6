from __future__ import annotations

import gc
import io
import json
import logging
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.flows import INSTITUTION_ID_PATTERN
from app.main import create_app
from app.observability import configure_logging
from app.sandbox.config import SandboxSettings
from tests.conftest import issue_session, make_settings, serve_in_process
from tests.redis_server import RedisServer, bff_connections
from tests.sandbox.server import running_sandbox
from tests.waiting import wait_until, wait_until_async

PROBLEM = "application/problem+json"


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://flinks-bff.dev/problems/{code}"
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_livez_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/livez")
    _assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_validation_error_is_a_422_problem_that_does_not_echo_input(
    settings: object,
) -> None:
    app = create_app(settings)  # type: ignore[arg-type]

    @app.get("/echo/{count}")
    async def echo(count: int) -> dict[str, int]:
        return {"count": count}

    async with serve_in_process(app) as client:
        response = await client.get("/echo/canary-value-4711")
    body = _assert_problem(response, 422, "validation_error")
    assert body["errors"] == [
        {"loc": ["path", "count"], "msg": body["errors"][0]["msg"], "type": "int_parsing"}  # type: ignore[index]
    ]
    assert "canary-value-4711" not in response.text


async def test_unexpected_exception_is_a_500_problem_without_details(
    settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)  # type: ignore[arg-type]

    leaked = "-".join(("canary", "secret", "in", "exception"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(leaked)

    configure_logging("DEBUG")
    try:
        async with serve_in_process(app) as client:
            response = await client.get("/boom")
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    body = _assert_problem(response, 500, "internal_error")
    assert "canary" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in json.dumps(body)
    logged = capsys.readouterr().out
    assert "http.unhandled_error" in logged
    assert "RuntimeError" in logged  # the type helps operators ...
    assert "canary-secret-in-exception" not in logged  # ... the message could hold a secret


async def test_request_id_is_kept_when_safe_and_replaced_when_not(
    client: httpx.AsyncClient,
) -> None:
    kept = await client.get("/livez", headers={"X-Request-ID": "abc-123-def-456"})
    assert kept.headers["x-request-id"] == "abc-123-def-456"
    replaced = await client.get("/livez", headers={"X-Request-ID": "bad id\r\nX: y"})
    assert replaced.headers["x-request-id"] != "bad id\r\nX: y"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_access_log_is_json_with_route_template_and_no_query(
    client: httpx.AsyncClient,
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        await client.get("/no/such/path?token=canary-token-1&loginId=canary-login-2")
        await client.get("/openapi.json?state=canary-state-3")
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "http.request"]
    assert [line["route"] for line in access] == ["unmatched", "/openapi.json"]
    assert all(line["request_id"] and line["status"] for line in access)
    assert "canary" not in stream.getvalue()
    assert "/no/such/path" not in stream.getvalue()


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/livez")
    await client.get("/livez")
    await client.get("/nope/xyz")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/livez",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text
    assert "/nope/xyz" not in text


async def test_lifespan_closes_its_clients(redis_url: str, redis: Redis) -> None:
    with running_sandbox(SandboxSettings()) as flinks:
        settings = make_settings(
            redis_url,
            FLINKS_API_URL=flinks.base_url,
            FLINKS_CUSTOMER_ID=flinks.customer_id,
            FLINKS_SECRET_KEY=flinks.settings.secret_key,
        )
        async with serve_in_process(create_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
            await issue_session(client, redis_url)
            assert (await client.post("/v1/authorize-tokens", json={})).status_code == 201
            assert bff_connections(redis_url) >= 1
            assert flinks.served.open_connections() == 1  # the BFF's kept-alive connection
        assert bff_connections(redis_url) == 0
        wait_until(
            lambda: flinks.served.open_connections() == 0,
            what="the BFF's connection to Flinks to be closed",
        )


async def test_the_heap_start_up_made_is_frozen_while_the_app_runs(redis_url: str) -> None:
    """Full collections skip the import graph and the app's clients (app/main.py); the
    tests, which start app after app in one process, get them back for collection."""
    async with serve_in_process(create_app(make_settings(redis_url))) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_embedded_server_starts_and_stops_with_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.embedded_redis")
    app = create_app(make_settings(None))
    async with serve_in_process(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        # Where it listens is what `app.embedded_redis` logs as it starts.
        (started,) = [r for r in caplog.records if r.getMessage() == "embedded_redis.started"]
        port = int(started.__dict__["port"])  # logged as `extra`
        assert _port_open(port)
        direct = Redis.from_url(f"redis://127.0.0.1:{port}/0")
        assert await direct.set("k", "v", ex=5)
        await direct.aclose()
    assert not _port_open(port)
    stopped = [r for r in caplog.records if r.getMessage() == "embedded_redis.stopped"]
    assert [r.__dict__["port"] for r in stopped] == [port]


async def _wait_for(client: httpx.AsyncClient, status: int, within: float) -> None:
    async def answers() -> bool:
        response = await client.get("/readyz")
        assert response.status_code in (200, 503), response.text
        return response.status_code == status

    await wait_until_async(answers, what=f"/readyz to answer {status}", timeout=within)


async def test_readyz_503_when_redis_dies_and_200_when_it_returns(
    own_redis: RedisServer,
) -> None:
    app = create_app(make_settings(own_redis.url))
    async with serve_in_process(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_redis.kill()
        started = time.monotonic()
        response = await client.get("/readyz")
        assert time.monotonic() - started < 5
        _assert_problem(response, 503, "store_unavailable")
        assert (await client.get("/livez")).status_code == 200
        own_redis.start()
        await _wait_for(client, 200, within=10)


async def test_readyz_503_within_bounds_when_redis_is_frozen(own_redis: RedisServer) -> None:
    app: FastAPI = create_app(make_settings(own_redis.url))
    async with serve_in_process(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_redis.pause()
        try:
            started = time.monotonic()
            response = await client.get("/readyz")
            elapsed = time.monotonic() - started
            _assert_problem(response, 503, "store_unavailable")
            assert elapsed < 2.5
        finally:
            own_redis.resume()
        await _wait_for(client, 200, within=10)


@pytest.mark.parametrize(
    ("policy", "ready"), [("noeviction", True), ("volatile-ttl", True), ("allkeys-lru", False)]
)
async def test_readiness_refuses_a_redis_that_may_evict_any_key(
    own_redis: RedisServer, policy: str, ready: bool
) -> None:
    direct = Redis.from_url(own_redis.url)
    await direct.config_set("maxmemory-policy", policy)
    await direct.aclose()
    async with serve_in_process(create_app(make_settings(own_redis.url))) as client:
        response = await client.get("/readyz")
    if ready:
        assert response.status_code == 200
    else:
        _assert_problem(response, 503, "store_misconfigured")


async def test_the_demo_page_moves_to_the_public_url_host(client: httpx.AsyncClient) -> None:
    assert (await client.get("/")).status_code == 200  # served on BFF_PUBLIC_URL's host
    for host in ("localhost:8000", "evil.example"):
        moved = await client.get("/", headers={"Host": host})
        assert moved.status_code == 307
        assert moved.headers["location"] == "http://127.0.0.1:8000/"


def test_the_demo_page_checks_institution_ids_with_the_domain_pattern() -> None:
    """app.js cannot import Python: it mirrors the one definition, and this keeps them equal."""
    script = (Path(__file__).parents[2] / "app" / "web" / "app.js").read_text()
    mirrored = re.search(r"var INSTITUTION_ID = /(.+)/;", script)
    assert mirrored is not None
    assert mirrored.group(1) == INSTITUTION_ID_PATTERN

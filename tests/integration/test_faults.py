"""Faults in Redis and in Flinks: bounded, typed answers, never a 500, never an unsafe success.

Each scenario records whether it was survived; the suite prints the tally ("faults" figure).
Connect signs in live here (FLINKS_CONNECT_AUTHORIZE=live): the call that must never be sent
twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.settings import Settings
from app.store import flow_key
from tests.clock import FakeClock
from tests.conftest import issue_session, serve_in_process
from tests.figures import record
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.oauth_steps import linked_callback
from tests.redis_server import RedisServer
from tests.waiting import wait_until_async

# A Redis that does not answer costs a request two socket timeouts (app/store.py) before its
# 503; the bound is that with room for a loaded machine, and far below a hang.
REDIS_BOUND = 8.0
POLL_INTERVAL = 10  # seconds between two questions to Flinks about a pending flow
LIVE = {"FLINKS_CONNECT_AUTHORIZE": "live"}

SURVIVED: dict[str, bool] = {}
UNSAFE: list[str] = []
SERVER_ERRORS: list[str] = []


@pytest.fixture
def settings(redis_url: str, redis: Redis, sandbox: Sandbox) -> Settings:
    return bff_settings(redis_url, sandbox, **LIVE)


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    yield
    survived = sum(SURVIVED.values())
    record(
        "faults",
        f"{survived} of {len(SURVIVED)} scenarios survived, unsafe successes = {len(UNSAFE)}, "
        f"HTTP 500 = {len(SERVER_ERRORS)}",
    )


def _check(
    name: str, response: httpx.Response, status: int, code: str, within: float, took: float
) -> None:
    """The scenario's expectations; recorded before asserting, so the tally sees failures."""
    if response.status_code >= 500 and response.status_code not in (502, 503, 504):
        SERVER_ERRORS.append(name)
    if response.status_code < 400:
        UNSAFE.append(name)
    ok = (
        response.status_code == status
        and response.headers.get("content-type") == "application/problem+json"
        and response.json().get("code") == code
        and took <= within
    )
    SURVIVED[name] = ok
    assert response.status_code == status, (name, response.text)
    assert response.json()["code"] == code
    assert took <= within, f"{name} took {took:.2f}s"


def _check_outcome_unknown(name: str, response: httpx.Response, within: float, took: float) -> None:
    """A call Flinks may have acted on without answering: the flow is `pending` (its status is
    read again), never failed and never connected on a guess."""
    status = response.json().get("status") if response.status_code == 200 else None
    if response.status_code >= 500 and response.status_code not in (502, 503, 504):
        SERVER_ERRORS.append(name)
    if status == "connected":
        UNSAFE.append(name)
    SURVIVED[name] = status == "pending" and took <= within
    assert response.status_code == 200, (name, response.text)
    assert status == "pending"
    assert took <= within, f"{name} took {took:.2f}s"


async def _timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def _faults(sandbox: Sandbox, **config: Any) -> None:
    response = await sandbox.http.put("/__sandbox/faults", json=config)
    assert response.status_code == 200, response.text


# -- Redis ---------------------------------------------------------------------------------


async def test_redis_killed(own_redis: RedisServer, sandbox: Sandbox) -> None:
    app = create_app(bff_settings(own_redis.url, sandbox))
    async with serve_in_process(app) as client:
        started = (await client.post("/v1/connect/sessions", json={})).json()
        callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
        await sandbox.http.delete("/__sandbox/calls")
        own_redis.kill()
        for name, request in (
            ("redis killed: start", client.post("/v1/connect/sessions", json={})),
            ("redis killed: status", client.get(f"/v1/flows/{started['flow_id']}")),
            ("redis killed: callback", client.get(callback.path_and_query)),
            ("redis killed: readyz", client.get("/readyz")),
        ):
            response, took = await _timed(request)
            _check(name, response, 503, "store_unavailable", REDIS_BOUND, took)
    assert await sandbox.authorize_calls() == []


async def test_redis_frozen(own_redis: RedisServer, sandbox: Sandbox) -> None:
    app = create_app(bff_settings(own_redis.url, sandbox))
    async with serve_in_process(app) as client:
        callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
        await sandbox.http.delete("/__sandbox/calls")
        own_redis.pause()
        try:
            for name, request in (
                ("redis frozen: callback", client.get(callback.path_and_query)),
                ("redis frozen: start", client.post("/v1/connect/sessions", json={})),
            ):
                response, took = await _timed(request)
                _check(name, response, 503, "store_unavailable", REDIS_BOUND, took)
        finally:
            own_redis.resume()
        assert await sandbox.authorize_calls() == []
        # The frozen server never answered who the session is, so the state was not even
        # asked for: once Redis is back the same callback goes through, once.
        resumed = await client.get(callback.path_and_query)
        assert resumed.status_code == 303
        assert "status=connected" in resumed.headers["location"]
        assert len(await sandbox.authorize_calls()) == 1
        replayed = await client.get(callback.path_and_query)
        assert replayed.status_code == 403
        assert len(await sandbox.authorize_calls()) == 1


async def test_redis_paused_clients(own_redis: RedisServer, sandbox: Sandbox) -> None:
    app = create_app(bff_settings(own_redis.url, sandbox))
    direct = Redis.from_url(own_redis.url)
    async with serve_in_process(app) as client:
        await client.get("/readyz")
        await direct.client_pause(int(REDIS_BOUND * 2000), all=True)
        response, took = await _timed(client.post("/v1/connect/sessions", json={}))
        _check("redis slow: start", response, 503, "store_unavailable", REDIS_BOUND, took)
    await direct.aclose()


# -- Flinks --------------------------------------------------------------------------------


async def _connect_login(client: httpx.AsyncClient, sandbox: Sandbox) -> tuple[str, str]:
    started = (await client.post("/v1/connect/sessions", json={})).json()
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    await sandbox.http.delete("/__sandbox/calls")
    return started["flow_id"], login_id


async def test_flinks_5xx_on_authorize_is_never_retried(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    flow_id, login_id = await _connect_login(client, sandbox)
    await _faults(sandbox, error_rate=1, error_status=500, endpoints=["Authorize"])
    response, took = await _timed(
        client.post(f"/v1/connect/sessions/{flow_id}/complete", json={"login_id": login_id})
    )
    # A 500 with AGGREGATION_ERROR is Flinks' documented answer: the flow fails with it.
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    SURVIVED["flinks 500 on Authorize"] = True
    assert len(await sandbox.authorize_calls()) == 1


async def test_flinks_bare_503_on_authorize(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    flow_id, login_id = await _connect_login(client, sandbox)
    await _faults(
        sandbox, error_rate=1, error_status=503, error_code="RETRY_LATER_X", endpoints=["Authorize"]
    )
    response, took = await _timed(
        client.post(f"/v1/connect/sessions/{flow_id}/complete", json={"login_id": login_id})
    )
    _check("flinks 503 on Authorize", response, 503, "flinks_unavailable", 5, took)
    assert len(await sandbox.authorize_calls()) == 1
    status = (await client.get(f"/v1/flows/{flow_id}")).json()
    assert status["status"] == "failed"


async def test_flinks_timeout_on_authorize(redis_url: str, redis: Redis, sandbox: Sandbox) -> None:
    clock = FakeClock()
    settings = bff_settings(redis_url, sandbox, FLINKS_AUTHORIZE_TIMEOUT=1, **LIVE)
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        flow_id, login_id = await _connect_login(client, sandbox)
        await _faults(sandbox, timeout_rate=1, timeout_seconds=3, endpoints=["Authorize"])
        response, took = await _timed(
            client.post(f"/v1/connect/sessions/{flow_id}/complete", json={"login_id": login_id})
        )
        # Flinks may still link it: the flow waits for Flinks' answer, it does not fail.
        _check_outcome_unknown("flinks timeout on Authorize", response, 2, took)
        # The sandbox records the call when its held response ends (3 s).
        await wait_until_async(sandbox.authorize_calls, what="the held /Authorize to end")
        await sandbox.http.delete("/__sandbox/faults")
        assert (await client.get(f"/v1/flows/{flow_id}")).json()["status"] == "pending"
        clock.advance(POLL_INTERVAL)  # the holder asks Flinks again, in the background

        async def connected() -> bool:
            flow = (await client.get(f"/v1/flows/{flow_id}")).json()
            return bool(flow["status"] == "connected")

        await wait_until_async(connected, what="the pending flow to be asked about again")
    calls = await sandbox.authorize_calls()
    # The live call was sent once, never again; the question after it was a cached /Authorize.
    assert [call["most_recent_cached"] for call in calls] == [False, True]


async def test_flinks_drops_the_connection_on_authorize(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    flow_id, login_id = await _connect_login(client, sandbox)
    await _faults(sandbox, drop_rate=1, endpoints=["Authorize"])
    response, took = await _timed(
        client.post(f"/v1/connect/sessions/{flow_id}/complete", json={"login_id": login_id})
    )
    _check_outcome_unknown("flinks drop on Authorize", response, 5, took)
    assert len(await sandbox.authorize_calls()) == 1
    assert (await client.get(f"/v1/flows/{flow_id}")).json()["status"] != "failed"


async def test_minting_is_retried_within_its_budget(
    client: httpx.AsyncClient, sandbox: Sandbox, redis_url: str
) -> None:
    await issue_session(client, redis_url)
    await _faults(
        sandbox, error_rate=1, error_status=503, endpoints=["GenerateAuthorizeToken"], remaining=2
    )
    response, took = await _timed(client.post("/v1/authorize-tokens", json={}))
    assert response.status_code == 201
    SURVIVED["flinks mint fails twice, then works"] = took < 5
    assert [c["status"] for c in await sandbox.calls("GenerateAuthorizeToken")] == [503, 503, 200]


@pytest.mark.parametrize(("status", "fault"), [(429, "error"), (503, "error"), (0, "drop")])
async def test_minting_gives_up_with_a_typed_error(
    client: httpx.AsyncClient, sandbox: Sandbox, redis_url: str, status: int, fault: str
) -> None:
    await issue_session(client, redis_url)
    config: dict[str, Any] = {"endpoints": ["GenerateAuthorizeToken"]}
    config |= {"drop_rate": 1} if fault == "drop" else {"error_rate": 1, "error_status": status}
    await _faults(sandbox, **config)
    response, took = await _timed(client.post("/v1/authorize-tokens", json={}))
    _check(
        f"flinks {fault} {status or ''} on mint".replace("  ", " "),
        response,
        503,
        "flinks_unavailable",
        5,
        took,
    )
    assert len(await sandbox.calls("GenerateAuthorizeToken")) == 3  # the whole budget, no more


async def test_oauth_start_when_flinks_fails(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    await _faults(sandbox, error_rate=1, error_status=502, endpoints=["OAuthAuthorize"])
    response, took = await _timed(
        client.get("/v1/oauth/start", params={"institution": "FlinksCapital"})
    )
    _check("flinks 502 on OAuth start", response, 503, "flinks_unavailable", 5, took)
    assert "location" not in response.headers


async def test_the_circuit_breaker_stops_hammering_and_recovers(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, FLINKS_BREAKER_FAILURES=3, FLINKS_BREAKER_RESET=1)
    clock = FakeClock()
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        await issue_session(client, redis_url)
        await _faults(sandbox, error_rate=1, error_status=503)
        first = await client.post("/v1/authorize-tokens", json={})
        assert first.status_code == 503
        calls = len(await sandbox.calls("GenerateAuthorizeToken"))
        assert calls == 3
        for _ in range(20):
            response, took = await _timed(client.post("/v1/authorize-tokens", json={}))
            assert response.status_code == 503
            assert took < 2  # no call, no retry: generous for a loaded machine
            assert int(response.headers["retry-after"]) >= 1
        assert len(await sandbox.calls("GenerateAuthorizeToken")) == calls
        await sandbox.http.delete("/__sandbox/faults")
        clock.advance(1.05)  # past FLINKS_BREAKER_RESET: the next call is the probe
        recovered = await client.post("/v1/authorize-tokens", json={})
        assert recovered.status_code == 201
    SURVIVED["flinks down: circuit breaker opens and recovers"] = True


async def test_redis_frozen_while_flinks_answer_is_saved(
    own_redis: RedisServer, sandbox: Sandbox
) -> None:
    """The client is told to read the status again, never that the flow failed; the flow then
    reads as what really happened, and a retried complete answers that, not a conflict."""
    name = "redis frozen while the outcome is saved"
    clock = FakeClock()
    settings = bff_settings(own_redis.url, sandbox, FLINKS_AUTHORIZE_TIMEOUT=10, **LIVE)
    probe = Redis.from_url(own_redis.url, decode_responses=True)
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        flow_id, login_id = await _connect_login(client, sandbox)
        # Flinks takes 1 s to answer; Redis freezes as soon as the flow is claimed.
        await _faults(sandbox, timeout_rate=1, timeout_seconds=1, endpoints=["Authorize"])
        url = f"/v1/connect/sessions/{flow_id}/complete"
        completing = asyncio.create_task(client.post(url, json={"login_id": login_id}))

        async def claimed() -> bool:
            raw = await probe.get(flow_key(flow_id))
            return raw is not None and '"status":"authorizing"' in raw

        await wait_until_async(claimed, what="the flow to be claimed")
        own_redis.pause()
        try:
            response = await completing
        finally:
            own_redis.resume()
        _check(name, response, 503, "store_unavailable", 5, 0)
        assert "status" in response.json()["detail"]
        assert response.headers["retry-after"] == "2"
        await sandbox.http.delete("/__sandbox/faults")

        status = (await client.get(f"/v1/flows/{flow_id}")).json()["status"]
        assert status in ("authorizing", "connected")  # the save landed late, or not at all
        clock.advance(120)  # past the lease of the call that lost its answer: a read asks Flinks
        assert (await client.get(f"/v1/flows/{flow_id}")).json()["status"] == "connected"
        retried = await client.post(url, json={"login_id": login_id})
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "connected"
    await probe.aclose()
    assert [c["most_recent_cached"] for c in await sandbox.authorize_calls()].count(False) == 1

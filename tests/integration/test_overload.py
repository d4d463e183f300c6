"""Load: past BFF_MAX_INFLIGHT the BFF sheds requests on purpose (503 overloaded, at once), and
under it a healthy store never fails a request for want of a pool connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.store import POOL_SIZE
from tests.conftest import serve_in_process
from tests.figures import record
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.edge_servers import connect, edge_bff, head, read_response
from tests.redis_server import RedisServer, bff_connections
from tests.waiting import scaled, wait_until_async

CAP = 4
EXCESS = 3
BURST = 300
BUSY_SECONDS = 1.0  # a healthy but busy store: the old pool wait was 0.5 s


async def _in_flight(client: httpx.AsyncClient) -> float:
    metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith("http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no http_requests_in_flight gauge")


async def test_requests_beyond_the_cap_are_shed_at_once_and_the_rest_succeed(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    # The held requests must not be cut as slow clients meanwhile, however busy the machine.
    settings = bff_settings(redis_url, sandbox, BFF_MAX_INFLIGHT=CAP, BFF_REQUEST_TIMEOUT=300)
    with edge_bff(create_app(settings), settings) as url, contextlib.ExitStack() as sockets:
        # CAP flow starts held in flight: headers sent, the 2-byte body not yet.
        held = [sockets.enter_context(connect(url)) for _ in range(CAP)]
        for sock in held:
            sock.sendall(
                head("POST", "/v1/connect/sessions", "Content-Type: application/json")
                + b"Content-Length: 2\r\n\r\n"
            )
        async with httpx.AsyncClient(base_url=url, timeout=scaled(30)) as client:
            await wait_until_async(
                lambda: _check_in_flight(client, CAP), what=f"{CAP} requests in flight"
            )
            excess = await asyncio.gather(
                *(client.post("/v1/connect/sessions", json={}) for _ in range(EXCESS))
            )
            for response in excess:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["code"] == "overloaded"
                assert response.headers["retry-after"] == "1"
                assert response.headers["x-request-id"]
                assert response.headers["x-content-type-options"] == "nosniff"
            # Probes are not counted, so an orchestrator still sees the instance alive and ready.
            assert (await client.get("/livez")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200

            for sock in held:
                sock.sendall(b"{}")
            released = [read_response(sock, "POST") for sock in held]
            assert [r.status for r in released] == [201] * CAP, [r.body for r in released]
            # The slots are free again.
            assert (await client.post("/v1/connect/sessions", json={})).status_code == 201
            metrics = (await client.get("/metrics")).text
            assert f"http_requests_shed_total {float(EXCESS)}" in metrics
            assert await _in_flight(client) == 0
    # The shed requests did no work: CAP + 1 flows, so CAP + 1 tokens minted.
    assert len(await sandbox.calls("GenerateAuthorizeToken")) == CAP + 1


async def _check_in_flight(client: httpx.AsyncClient, expected: int) -> bool:
    return await _in_flight(client) == expected


async def test_the_redis_pool_is_open_before_traffic_and_a_burst_opens_no_more(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    before = bff_connections(redis_url)
    app = create_app(bff_settings(redis_url, sandbox))
    async with serve_in_process(app) as client:
        assert bff_connections(redis_url) == before + POOL_SIZE
        responses = await asyncio.gather(
            *(client.post("/v1/connect/sessions", json={}) for _ in range(2 * POOL_SIZE))
        )
        assert {r.status_code for r in responses} == {201}
        # Connecting during a burst is what timed out against a healthy Redis.
        assert bff_connections(redis_url) == before + POOL_SIZE


async def test_requests_that_find_every_redis_connection_busy_wait_for_one(
    own_redis: RedisServer, sandbox: Sandbox
) -> None:
    app = create_app(bff_settings(own_redis.url, sandbox))
    burst = 2 * POOL_SIZE
    async with serve_in_process(app) as client:
        flow_id = (await client.post("/v1/connect/sessions", json={})).json()["flow_id"]
        own_redis.pause()
        try:
            # A status read asks Redis first (whose session is this?). Frozen, Redis keeps
            # every pool connection busy with one read; the other half of the burst waits.
            reads = [asyncio.create_task(client.get(f"/v1/flows/{flow_id}")) for _ in range(burst)]
            await wait_until_async(
                lambda: _check_in_flight(client, burst), what=f"{burst} requests in flight"
            )
            # Busy for longer than the pool wait that used to fail requests.
            await asyncio.sleep(BUSY_SECONDS)
        finally:
            own_redis.resume()
        responses = await asyncio.gather(*reads)
    assert Counter(r.status_code for r in responses) == {200: burst}


@pytest.mark.capacity
async def test_a_burst_under_the_cap_larger_than_the_pools_gets_no_503(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    # The cap is above the burst: every request gets in, and every pool slot it needs exists.
    settings = bff_settings(redis_url, sandbox, BFF_MAX_INFLIGHT=BURST + 100)
    with edge_bff(create_app(settings), settings) as url:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=scaled(60)) as client:
            # One flow first: the process's first request imports and compiles what the burst
            # then shares (a cold start is not what this measures).
            assert (await client.post("/v1/connect/sessions", json={})).status_code == 201
            started = time.perf_counter()
            responses = await asyncio.gather(
                *(client.post("/v1/connect/sessions", json={}) for _ in range(BURST))
            )
            elapsed = time.perf_counter() - started
    outcomes = Counter(
        (r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses
    )
    assert outcomes == {(201, None): BURST}, outcomes
    record("burst", f"{BURST} concurrent flow starts, all 201, in {elapsed:.1f} s")

"""The BFF on a Redis Cluster of real Valkey processes, 3 primaries with a replica each
(REDIS_URL=redis+cluster://).

A cluster refuses any command whose keys span slots (CROSSSLOT) and redirects a key to the node
that holds its slot (MOVED): the flows, the rate limiter and readiness must all work through it.
A primary killed mid-run is replaced by its replica: readiness says so, and the flows go on.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import RedisCluster

from app.errors import RateLimited
from app.main import create_app
from app.ratelimit import Limits, RateCounters, RateLimiter
from app.store import RedisClient, close_redis, connect_redis, flow_key
from tests.conftest import serve_in_process
from tests.figures import record
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import complete, start
from tests.integration.oauth_steps import linked_callback, returned
from tests.redis_server import start_redis_cluster
from tests.topology.failover import flows_go_on, readiness_through_failover, started_flows
from tests.topology.serve import Cluster, replicated, start_cluster
from tests.waiting import wait_until_async

pytestmark = pytest.mark.topology


@pytest.fixture
async def cluster_client(cluster: Cluster) -> AsyncIterator[RedisClient]:
    client = connect_redis(cluster.url, max_connections=8)
    yield client
    await close_redis(client)


async def test_the_url_gives_a_cluster_client_that_sees_every_primary_and_replica(
    cluster_client: RedisClient,
) -> None:
    assert isinstance(cluster_client, RedisCluster)
    await cluster_client.initialize()
    assert len(cluster_client.get_primaries()) == 3
    # The client routes to primaries only (no reads from replicas): the replicas, as it sees them.
    nodes = await cluster_client.cluster_nodes()
    assert (
        sorted("slave" in str(node["flags"]) for node in nodes.values()) == [False] * 3 + [True] * 3
    )


async def test_redis_cluster_true_reads_a_redis_url_as_the_clusters_nodes(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    """REDIS_CLUSTER=true with a plain redis://h:p,h:p URL: the same cluster, the same flow."""
    url = "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in cluster.primaries)
    settings = bff_settings(url, sandbox, REDIS_CLUSTER=True)
    async with serve_in_process(create_app(settings)) as client:
        assert (await client.get("/readyz")).status_code == 200
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        response = await complete(client, started["flow_id"], login_id)
        assert response.json()["status"] == "connected", response.text


async def test_connect_and_oauth_flows_complete_on_the_cluster(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    settings = bff_settings(cluster.url, sandbox)
    async with serve_in_process(create_app(settings)) as client:
        assert (await client.get("/readyz")).status_code == 200

        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        response = await complete(client, started["flow_id"], login_id)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "connected"

        callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
        query = returned(await client.get(callback.path_and_query))
        assert query["status"] == ["connected"]
        flow = await client.get(f"/v1/flows/{query['flow_id'][0]}")
        assert flow.json()["status"] == "connected"
        # The state was single use: the same callback again is not a second success.
        again = await client.get(callback.path_and_query)
        assert (again.status_code, again.json()["code"]) == (403, "state_invalid")


async def test_the_rate_limiter_counts_on_the_cluster(cluster_client: RedisClient) -> None:
    limiter = RateLimiter(RateCounters(cluster_client), Limits(window=30, per_ip=2, per_session=5))
    session = secrets.token_urlsafe(16)
    address = f"192.0.2.{secrets.randbelow(250) + 1}"
    await limiter.check("topology", client_ip=address, session=session)
    await limiter.check("topology", client_ip=address, session=session)
    with pytest.raises(RateLimited, match="from this address"):
        await limiter.check("topology", client_ip=address, session=session)


async def test_readiness_needs_every_primary(sandbox: Sandbox) -> None:
    """/readyz pings every primary: one down is 503, and 200 again once it is back."""
    servers = start_redis_cluster(3)
    try:
        async with serve_in_process(create_app(bff_settings(servers.url, sandbox))) as client:
            assert (await client.get("/readyz")).status_code == 200
            servers.nodes[2].kill()
            response = await client.get("/readyz")
            assert (response.status_code, response.json()["code"]) == (503, "store_unavailable")
            restarted = time.monotonic()
            servers.nodes[2].start()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until_async(ready, what="/readyz to answer 200 with every primary back")
            seconds = time.monotonic() - restarted
            record("cluster primary restarted", f"to /readyz 200 again: {seconds:.1f} s")
    finally:
        servers.stop()


FLOWS = 6


async def test_a_primary_killed_mid_run_fails_over_and_the_flows_go_on(sandbox: Sandbox) -> None:
    """SIGKILL a primary while flows on it are completing: each of those answers a success or
    a retryable 503, never a 500; /readyz answers 503 until the replica is promoted, then 200;
    then every flow, the interrupted ones retried, completes, and new flows do too."""
    cluster = start_cluster(3)
    try:
        # A lease held by a request that lost Redis is taken over after BFF_LEASE_TTL.
        settings = bff_settings(cluster.url, sandbox, BFF_LEASE_TTL=2)
        async with serve_in_process(create_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
            flows = await started_flows(client, sandbox, FLOWS)
            victim = cluster.holder(flow_key(flows[0][0]))
            on_victim = [f for f in flows if cluster.holder(flow_key(f[0])) is victim]
            # What the victim acknowledged before the completes is on its replica: only what
            # they write while it dies may be lost (and is retried).
            await asyncio.to_thread(replicated, victim, f"test:replicated:{{{flows[0][0]}}}")

            completing = [asyncio.create_task(complete(client, *flow)) for flow in on_victim]
            await asyncio.to_thread(victim.kill)  # the completes are in flight meanwhile
            killed = time.monotonic()

            await readiness_through_failover(client, killed, "cluster failover")
            await flows_go_on(client, sandbox, completing, flows)
    finally:
        cluster.stop()

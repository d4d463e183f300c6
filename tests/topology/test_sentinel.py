"""The BFF on a Sentinel-watched primary (REDIS_URL=redis+sentinel://.../service_name): a
primary, a replica and 3 Sentinels with quorum 2, all real Valkey processes
(tests/topology/serve.py). A failover needs two Sentinels to agree the primary is down and a
majority to elect the one that promotes the replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from app.main import create_app
from tests.conftest import serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import complete, start
from tests.topology.failover import flows_go_on, readiness_through_failover, started_flows
from tests.topology.serve import Sentinels, replicated, start_sentinels

pytestmark = pytest.mark.topology

FLOWS = 4


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sentinels]:
    sentinels = start_sentinels(tmp_path_factory.mktemp("sentinels"))
    yield sentinels
    sentinels.stop()


async def test_a_connect_flow_completes_through_the_sentinels_primary(
    watched: Sentinels, sandbox: Sandbox
) -> None:
    assert len(watched.sentinels) == 3
    async with serve_in_process(create_app(bff_settings(watched.url, sandbox))) as client:
        assert (await client.get("/readyz")).status_code == 200
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        response = await complete(client, started["flow_id"], login_id)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "connected"


async def test_a_primary_killed_mid_run_fails_over_and_the_flows_go_on(
    tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox
) -> None:
    """SIGKILL the primary while flows are completing: each answers a success or a retryable
    503, never a 500; /readyz answers 503 until the Sentinels promote the replica, then 200;
    then every flow, the interrupted ones retried, completes, and new flows do too."""
    watched = start_sentinels(tmp_path_factory.mktemp("failover"))
    try:
        # A lease held by a request that lost Redis is taken over after BFF_LEASE_TTL.
        settings = bff_settings(watched.url, sandbox, BFF_LEASE_TTL=2)
        async with serve_in_process(create_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
            flows = await started_flows(client, sandbox, FLOWS)

            # What the primary acknowledged before the completes is on its replica: only what
            # they write while it dies may be lost (and is retried).
            await asyncio.to_thread(replicated, watched.primary, "test:replicated")
            completing = [asyncio.create_task(complete(client, *flow)) for flow in flows[:2]]
            await asyncio.to_thread(watched.primary.kill)  # the completes are in flight meanwhile
            killed = time.monotonic()

            await readiness_through_failover(client, killed, "sentinel failover")
            assert watched.primary_port() == watched.replica.port
            await flows_go_on(client, sandbox, completing, flows)
    finally:
        watched.stop()

"""What a failover test checks once it has killed a primary under flows in flight, whatever the
topology (cluster, Sentinel): readiness down then up again (the times recorded), every
interrupted request a success or a retryable 503, then every flow and new ones completing."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.figures import record
from tests.integration.conftest import Sandbox
from tests.integration.connect_steps import complete, start, status
from tests.integration.oauth_steps import linked_callback, returned
from tests.waiting import wait_until_async


async def started_flows(
    client: httpx.AsyncClient, sandbox: Sandbox, count: int
) -> list[tuple[str, str]]:
    """`count` Connect flows started and signed in through Connect, not yet completed: each
    one's (flow id, loginId)."""
    flows = []
    for _ in range(count):
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        flows.append((started["flow_id"], login_id))
    return flows


async def readiness_through_failover(client: httpx.AsyncClient, killed: float, name: str) -> None:
    """/readyz answers 503 while the topology fails over and 200 once it has; records both
    times from `killed` (a monotonic time) under `name`."""

    async def readiness() -> int:
        return (await client.get("/readyz")).status_code

    async def unready() -> bool:
        return await readiness() == 503

    async def ready() -> bool:
        return await readiness() == 200

    await wait_until_async(unready, what="/readyz 503 with a primary dead")
    to_503 = time.monotonic() - killed
    await wait_until_async(ready, what="/readyz 200 once a replica is promoted")
    to_200 = time.monotonic() - killed
    record(name, f"primary killed to /readyz 503: {to_503:.2f} s, to 200 again: {to_200:.1f} s")


async def flows_go_on(
    client: httpx.AsyncClient,
    sandbox: Sandbox,
    completing: list[asyncio.Task[httpx.Response]],
    flows: list[tuple[str, str]],
) -> None:
    """The interrupted completes answered a success or a retryable 503 (never a 500); every
    flow, retried, connects; a new Connect flow and an OAuth flow complete."""
    for response in await asyncio.gather(*completing):
        outcome = (response.status_code, response.json().get("code"))
        assert outcome in {(200, None), (503, "store_unavailable")}, response.text

    for flow_id, login_id in flows:  # a retry of `complete` is safe: it is idempotent
        retried = await complete(client, flow_id, login_id)
        assert retried.status_code == 200, retried.text

        async def connected(flow_id: str = flow_id) -> bool:
            return bool((await status(client, flow_id))["status"] == "connected")

        await wait_until_async(connected, what="an interrupted flow to connect")

    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    response = await complete(client, started["flow_id"], login_id)
    assert response.json()["status"] == "connected", response.text
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    query = returned(await client.get(callback.path_and_query))
    assert query["status"] == ["connected"]

"""The BFF on a Sentinel-watched primary (REDIS_URL=redis+sentinel://.../service_name): a
primary, a replica and one Sentinel, all real Valkey processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.main import create_app
from tests.conftest import serve_in_process
from tests.figures import record
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import complete, start
from tests.ports import HOST
from tests.redis_server import RedisServer, start_redis_server, start_sentinel
from tests.waiting import wait_until_async

pytestmark = pytest.mark.topology

SERVICE = "bffprimary"


@dataclass
class Watched:
    url: str
    primary: RedisServer
    replica: RedisServer


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    primary = start_redis_server()
    replica = start_redis_server(replica_of=primary.port)
    sentinel = start_sentinel(tmp_path, primary.port, SERVICE)
    try:
        yield Watched(f"redis+sentinel://{HOST}:{sentinel.port}/{SERVICE}", primary, replica)
    finally:
        sentinel.stop()
        replica.stop()
        primary.stop()


async def test_a_connect_flow_completes_through_the_sentinels_primary(
    watched: Watched, sandbox: Sandbox
) -> None:
    async with serve_in_process(create_app(bff_settings(watched.url, sandbox))) as client:
        assert (await client.get("/readyz")).status_code == 200
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        response = await complete(client, started["flow_id"], login_id)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "connected"


async def test_readiness_follows_a_failover(watched: Watched, sandbox: Sandbox) -> None:
    """The primary dies: 503 until the Sentinel promotes the replica, then 200, and a flow
    started afterwards completes on the new primary."""
    async with serve_in_process(create_app(bff_settings(watched.url, sandbox))) as client:
        assert (await client.get("/readyz")).status_code == 200
        killed = time.monotonic()
        watched.primary.kill()
        response = await client.get("/readyz")
        assert (response.status_code, response.json()["code"]) == (503, "store_unavailable")

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until_async(ready, what="/readyz to answer 200 on the promoted replica")
        seconds = time.monotonic() - killed
        record("sentinel failover", f"primary killed to /readyz 200 again: {seconds:.1f} s")
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        response = await complete(client, started["flow_id"], login_id)
        assert response.json()["status"] == "connected", response.text

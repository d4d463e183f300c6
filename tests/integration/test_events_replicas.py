"""Events out across replicas: a `flinks-bff serve` process killed (SIGKILL) while its attempt
is in flight leaves the event pending in the consumer group; the other replica claims it and
delivers it under the same webhook-id."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from app.settings import DEV_PUBLIC_URL
from app.store import EVENTS_GROUP, EVENTS_KEY, EventQueue
from tests.integration.conftest import Sandbox, bff_process_env
from tests.integration.event_receiver import SECRET, Receiver
from tests.integration.servers import BffProcess, bff_servers
from tests.waiting import wait_until_async

ATTEMPT_TIMEOUT = 3  # BFF_WEBHOOK_TIMEOUT: a dead consumer's entry is claimed after 2x + 2 s


@pytest.fixture
def replicas(redis_url: str, sandbox: Sandbox, receiver_url: str) -> Iterator[list[BffProcess]]:
    env = bff_process_env(
        redis_url,
        sandbox,
        BFF_WEBHOOK_URL=receiver_url,
        BFF_WEBHOOK_SECRET=SECRET,
        BFF_WEBHOOK_TIMEOUT=str(ATTEMPT_TIMEOUT),
    )
    with bff_servers(env, 2) as started:
        yield started


async def _pending_consumer(redis: Redis) -> str | None:
    held = await redis.xpending_range(EVENTS_KEY, EVENTS_GROUP, min="-", max="+", count=1)
    return str(held[0]["consumer"]) if held else None


async def test_a_replica_killed_mid_delivery_leaves_the_event_to_the_other(
    redis: Redis, sandbox: Sandbox, receiver: Receiver, replicas: list[BffProcess]
) -> None:
    receiver.hold()  # the first attempt hangs until released
    async with httpx.AsyncClient(
        base_url=replicas[0].url, headers={"Origin": DEV_PUBLIC_URL}, timeout=30
    ) as browser:
        started = await browser.post("/v1/connect/sessions", json={})
        assert started.status_code == 201, started.text
        flow_id = started.json()["flow_id"]
        login_id = await sandbox.issue_login("greatday_nomfa")
        completed = await browser.post(
            f"/v1/connect/sessions/{flow_id}/complete",
            json={"login_id": login_id, "institution": "FlinksCapital"},
        )
        assert completed.json()["status"] == "connected", completed.text

    async def in_flight() -> str | None:
        if not receiver.deliveries:
            return None
        return await _pending_consumer(redis)

    consumer = await wait_until_async(in_flight, what="an attempt held by the receiver")
    assert consumer is not None
    # Consumer names are `<host>-<pid>-<random>`: the process whose attempt is in flight.
    pid = int(consumer.rsplit("-", 2)[1])
    (victim,) = [bff for bff in replicas if bff.process.pid == pid]
    os.kill(pid, signal.SIGKILL)
    victim.process.wait()
    receiver.release()  # its answer goes to a closed connection: the entry stays pending

    async def redelivered() -> bool:
        return len(receiver.deliveries) >= 2

    await wait_until_async(redelivered, what="the other replica's delivery", timeout=60)
    first, second = receiver.deliveries[:2]
    assert first.event_id == second.event_id  # the same webhook-id: the receiver de-duplicates
    assert (second.type, second.body["data"]["flow_id"]) == ("link.connected", flow_id)
    assert second.verified

    async def drained() -> bool:
        return await _pending_consumer(redis) is None and await EventQueue(redis).counts() == (
            0,
            0,
            0,
        )

    await wait_until_async(drained, what="the event acknowledged by the survivor")
    assert len(receiver.delivered()) == 1

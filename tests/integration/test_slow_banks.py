"""Slow banks: a live /Authorize that outlasts the browser's wait and ends in 202
OPERATION_DISPATCHED, followed on AuthorizeAsync until Flinks answers; and the replica holding
the call dying (SIGKILL) or shutting down while another one serves the person.

The sandbox's `test_slow_bank` holds its live /Authorize `slow_bank_seconds` (real time), then
answers 202 and works on in the background until the control API finishes it. In process, the
BFF runs on a `FakeClock`: its waits (the browser's, the poll interval) pass when the test moves
the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.settings import Settings
from tests.clock import FakeClock
from tests.conftest import serve_in_process
from tests.integration.conftest import Sandbox, bff_settings
from tests.integration.connect_steps import (
    answer_until_connected,
    complete,
    start,
    status,
)
from tests.integration.servers import bff_servers
from tests.sandbox.server import SandboxHandle
from tests.waiting import wait_until_async

AUTHORIZE_WAIT = 5  # BFF_AUTHORIZE_WAIT's default: the longest a browser request waits
POLL_INTERVAL = 10  # Flinks' pace for its async endpoints
# slow_bank_seconds: the bank holds its answer this long (real time). The test moves the BFF's
# clock past the browser's wait as soon as the call reaches the bank, well within it.
HOLD = 3.0


def _live(redis_url: str, sandbox: Sandbox, **overrides: object) -> Settings:
    return bff_settings(redis_url, sandbox, FLINKS_CONNECT_AUTHORIZE="live", **overrides)


async def _statuses(
    read: Callable[[], Awaitable[dict[str, Any]]], until: str, seen: list[str], clock: FakeClock
) -> dict[str, Any]:
    """Reads the status as a person's page would, the BFF's clock moving one poll interval
    between reads, until it says `until`; every status seen is kept."""

    async def reached() -> dict[str, Any] | None:
        clock.advance(POLL_INTERVAL)
        flow = await read()
        seen.append(flow["status"])
        return flow if flow["status"] == until else None

    found = await wait_until_async(reached, what=f"the flow to be {until}", interval=0.05)
    assert found is not None
    return found


@pytest.mark.parametrize("api_key_check", ["required", "optional"])
async def test_a_slow_bank_connects_while_the_person_only_reads_the_status(
    redis_url: str, redis: Redis, sandbox: Sandbox, api_key_check: str
) -> None:
    await sandbox.switch(
        slow_bank_seconds=HOLD, dispatched_seconds=600, api_key_check=api_key_check
    )
    clock = FakeClock()
    async with serve_in_process(create_app(_live(redis_url, sandbox), clock=clock)) as client:
        started = await start(client)
        flow_id = started["flow_id"]
        login_id = await sandbox.issue_login("test_slow_bank")
        completing = asyncio.create_task(complete(client, flow_id, login_id))
        # The bank is at work (the sandbox holds the answer): the browser waits no longer.
        await wait_until_async(sandbox.dispatched, what="the live /Authorize to reach the bank")
        clock.advance(AUTHORIZE_WAIT)
        response = await completing
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "authorizing"

        # Flinks' sync limit passes: 202 OPERATION_DISPATCHED, and the flow is pending.
        async def pending() -> bool:
            return bool((await status(client, flow_id))["status"] == "pending")

        await wait_until_async(pending, what="Flinks' 202 to be recorded")
        (job,) = await sandbox.dispatched()
        await sandbox.finish(job["request_id"])
        seen: list[str] = []
        await _statuses(lambda: status(client, flow_id), "connected", seen, clock)
        assert set(seen) <= {"pending", "connected"}

    (live,) = await sandbox.authorize_calls()  # never sent again, never re-run
    assert (live["most_recent_cached"], live["status"]) == (False, 202)
    assert live["flinks_code"] == "OPERATION_DISPATCHED"
    polls = await sandbox.calls("AuthorizeAsync")
    assert polls
    assert polls[-1]["status"] == 200
    assert len(polls) <= len(seen)  # at most one per poll interval
    for poll in polls:
        assert poll["request_id"] == live["response_request_id"]
        assert poll["api_key"] == sandbox.handle.settings.api_key


async def test_a_slow_bank_that_then_asks_a_question_is_answered_with_a_fresh_token(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    await sandbox.switch(slow_bank_seconds=0, dispatched_seconds=600)
    clock = FakeClock()
    async with serve_in_process(create_app(_live(redis_url, sandbox), clock=clock)) as client:
        started = await start(client)
        flow_id = started["flow_id"]
        login_id = await sandbox.issue_login("test_slow_bank_mfa")
        assert (await complete(client, flow_id, login_id)).json()["status"] == "pending"
        (job,) = await sandbox.dispatched()
        await sandbox.finish(job["request_id"])
        asked = await _statuses(lambda: status(client, flow_id), "mfa_required", [], clock)
        assert asked["mfa"]["attempt"] == 1
        done = await answer_until_connected(client, flow_id, asked)
    assert done["status"] == "connected"
    live, answer = await sandbox.authorize_calls()
    assert answer["request_id"] == live["response_request_id"] == job["request_id"]
    # No token produced the 203 (AuthorizeAsync needs none): a fresh one carries the answer.
    assert answer["token"] not in (None, live["token"])
    assert answer["status"] == 200


async def test_flinks_is_followed_for_thirty_minutes_at_most(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    """Flinks keeps a RequestId 30 minutes: past that the flow fails, as Flinks' session has."""
    await sandbox.switch(slow_bank_seconds=0, dispatched_seconds=7200)
    clock = FakeClock()
    settings = _live(redis_url, sandbox, BFF_FLOW_TTL=3600)
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        started = await start(client)
        flow_id = started["flow_id"]
        login_id = await sandbox.issue_login("test_dispatched")
        assert (await complete(client, flow_id, login_id)).json()["status"] == "pending"
        clock.advance(29 * 60)
        await wait_until_async(lambda: sandbox.calls("AuthorizeAsync"), what="a poll")
        assert (await status(client, flow_id))["status"] == "pending"
        clock.advance(60)

        async def ended() -> dict[str, Any] | None:
            flow = await status(client, flow_id)
            return flow if flow["status"] != "pending" else None

        flow = await wait_until_async(ended, what="the follow limit to pass")
    assert flow is not None
    assert (flow["status"], flow["error"]["code"]) == ("failed", "session_expired")
    assert len(await sandbox.calls("AuthorizeAsync")) == 1
    assert len(await sandbox.authorize_calls()) == 1


async def test_a_replica_shutting_down_hands_its_flow_over_at_once(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    """Its task is cancelled and gives its lease up: the next read anywhere takes over, without
    waiting for the lease to run out, and asks Flinks with a cached /Authorize."""
    await sandbox.switch(slow_bank_seconds=600, dispatched_seconds=600)
    clock = FakeClock()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = _live(redis_url, sandbox, BFF_ENCRYPTION_KEY=key)
    async with serve_in_process(create_app(settings, clock=clock)) as client:
        started = await start(client)
        flow_id = started["flow_id"]
        login_id = await sandbox.issue_login("test_slow_bank")
        completing = asyncio.create_task(complete(client, flow_id, login_id))
        await wait_until_async(sandbox.dispatched, what="the live /Authorize to reach the bank")
        clock.advance(AUTHORIZE_WAIT)
        assert (await completing).json()["status"] == "authorizing"
        cookies = client.cookies
    # The first replica has shut down, its call to Flinks cut short.
    async with serve_in_process(create_app(settings, clock=clock)) as other:
        other.cookies = cookies
        flow = await status(other, flow_id)  # the lease has not run out on the clock
    assert flow["status"] == "pending"
    live, cached = await sandbox.authorize_calls()
    assert (live["most_recent_cached"], cached["most_recent_cached"]) == (False, True)
    assert cached["status"] == 202  # the bank still works on it


def _env(handle: SandboxHandle, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "FLINKS_API_URL": handle.base_url,
        "FLINKS_CONNECT_URL": f"{handle.base_url}/v2/",
        "FLINKS_CUSTOMER_ID": handle.customer_id,
        "FLINKS_SECRET_KEY": handle.settings.secret_key,
        "FLINKS_API_KEY": handle.settings.api_key,
        "FLINKS_DEMO": "true",
        "FLINKS_CONNECT_AUTHORIZE": "live",
        # Both replicas read what the other sealed.
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "BFF_RATE_LIMIT_IP": "0",
        "BFF_RATE_LIMIT_SESSION": "0",
        "BFF_AUTHORIZE_WAIT": "1",
        "BFF_LEASE_TTL": "2",
    }


async def test_a_flow_whose_replica_is_killed_mid_call_is_settled_by_another(
    sandbox_handle: SandboxHandle, redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    await sandbox.switch(slow_bank_seconds=600, dispatched_seconds=600)
    with bff_servers(_env(sandbox_handle, redis_url), count=2) as (holder, other):
        async with httpx.AsyncClient(timeout=30) as browser:
            started = (await browser.post(f"{holder.url}/v1/connect/sessions", json={})).json()
            flow_id = started["flow_id"]
            login_id = await sandbox.issue_login("test_slow_bank")
            response = await browser.post(
                f"{holder.url}/v1/connect/sessions/{flow_id}/complete",
                json={"login_id": login_id},
            )
            assert response.json()["status"] == "authorizing"  # after BFF_AUTHORIZE_WAIT
            (job,) = await sandbox.dispatched()  # the bank is at work on the live call

            holder.process.kill()  # SIGKILL: no clean-up, the lease is left to run out
            holder.process.wait()
            await sandbox.finish(job["request_id"])

            seen: list[str] = []

            async def settled() -> bool:
                reply = await browser.get(f"{other.url}/v1/flows/{flow_id}")
                assert reply.status_code == 200, reply.text
                seen.append(reply.json()["status"])
                return seen[-1] not in ("authorizing", "pending")

            await wait_until_async(settled, what="the other replica to settle the flow")
        taken_over = "flow.taken_over" in other.log()

    assert seen[-1] == "connected", seen
    assert "failed" not in seen
    assert taken_over, other.log()
    calls = await sandbox.authorize_calls()
    assert [c["most_recent_cached"] for c in calls].count(False) == 1  # one live /Authorize
    assert calls[0]["login_id"] == login_id
    assert all(c["most_recent_cached"] for c in calls[1:])

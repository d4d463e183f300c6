"""Sessions the BFF did not issue are not sessions, and a session id changes when a flow connects.

The attack (security.md, session fixation): someone plants a cookie value in a victim's browser,
the victim links an account, and the planter reads the victim's flow with the same value.
"""

from __future__ import annotations

import secrets

import httpx
from redis.asyncio import Redis

from app.main import create_app
from tests.clock import FakeClock
from tests.conftest import serve_in_process
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings
from tests.integration.connect_steps import complete, start
from tests.integration.oauth_steps import linked_callback, returned
from tests.waiting import wait_until_async

COOKIE = "flinks_bff_session"


def _plant(client: httpx.AsyncClient, value: str) -> None:
    client.cookies.set(COOKIE, value, domain="127.0.0.1", path="/")


async def test_a_planted_cookie_value_is_not_adopted(client: httpx.AsyncClient) -> None:
    planted = secrets.token_urlsafe(32)
    _plant(client, planted)
    response = await client.post("/v1/connect/sessions", json={})
    assert response.status_code == 201, response.text
    issued = response.cookies.get(COOKIE)
    assert issued is not None
    assert issued != planted


async def test_an_unknown_session_owns_nothing(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient
) -> None:
    started = await start(client)
    _plant(other_browser, secrets.token_urlsafe(32))
    assert (await other_browser.get(f"/v1/flows/{started['flow_id']}")).status_code == 404


async def test_a_fixated_session_loses_the_victims_flows_when_one_connects(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    # The attacker gets a real session id, and plants it in the victim's browser.
    attacker = other_browser
    await start(attacker)
    known = attacker.cookies.get(COOKIE)
    assert known is not None
    victim = client
    _plant(victim, known)

    parallel = await start(victim)  # a second tab, not yet linked
    started = await start(victim)
    assert victim.cookies.get(COOKIE) == known  # the planted session was a real one
    # Before anything connects, the attacker shares the session (that is what fixation is).
    assert (await attacker.get(f"/v1/flows/{started['flow_id']}")).status_code == 200

    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    response = await complete(victim, started["flow_id"], login_id)
    assert response.json()["status"] == "connected"
    rotated = response.cookies.get(COOKIE)
    assert rotated is not None
    assert rotated != known

    for flow_id in (started["flow_id"], parallel["flow_id"]):
        assert (await attacker.get(f"/v1/flows/{flow_id}")).status_code == 404
        assert (await victim.get(f"/v1/flows/{flow_id}")).status_code == 200


async def test_oauth_callback_rotates_the_session_when_it_connects(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    before = client.cookies.get(COOKIE)
    response = await client.get(callback.path_and_query)
    query = returned(response)
    assert query["status"] == ["connected"]
    after = response.cookies.get(COOKIE)
    assert after is not None
    assert after != before
    assert (await client.get(f"/v1/flows/{query['flow_id'][0]}")).status_code == 200


async def test_mfa_that_connects_rotates_the_session(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "Greatday")
    response = await client.get(callback.path_and_query)
    query = returned(response)
    assert query["status"] == ["mfa_required"]
    assert response.cookies.get(COOKIE) is None  # not connected yet: no rotation
    before = client.cookies.get(COOKIE)
    flow_id = query["flow_id"][0]
    flow = (await client.get(f"/v1/flows/{flow_id}")).json()
    prompt = flow["mfa"]["challenges"][0]["prompt"]
    answered = await client.post(
        f"/v1/flows/{flow_id}/mfa", json={"responses": {prompt: ANSWERS[prompt]}}
    )
    assert answered.json()["status"] == "connected"
    after = answered.cookies.get(COOKIE)
    assert after is not None
    assert after != before
    assert (await client.get(f"/v1/flows/{flow_id}")).json()["status"] == "connected"


async def test_a_flow_that_connects_in_the_background_rotates_on_the_read_that_tells(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    """A slow bank connects after the browser's request has answered: the first status read
    that says so rotates the session, once."""
    await sandbox.switch(dispatched_seconds=600)
    clock = FakeClock()
    async with serve_in_process(
        create_app(bff_settings(redis_url, sandbox), clock=clock)
    ) as client:
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "test_dispatched")
        completed = await complete(client, started["flow_id"], login_id)
        assert completed.json()["status"] == "pending"
        assert completed.cookies.get(COOKIE) is None
        before = client.cookies.get(COOKIE)
        (job,) = await sandbox.dispatched()
        await sandbox.finish(job["request_id"])
        clock.advance(10)  # the poll interval: the BFF asks Flinks again, in the background

        async def telling() -> httpx.Response | None:
            read = await client.get(f"/v1/flows/{started['flow_id']}")
            return read if read.json()["status"] == "connected" else None

        told = await wait_until_async(telling, what="a read that says connected")
        assert told is not None
        rotated = told.cookies.get(COOKIE)
        assert rotated not in (None, before)
        again = await client.get(f"/v1/flows/{started['flow_id']}")
        assert again.json()["status"] == "connected"
        assert again.cookies.get(COOKIE) is None  # told once, rotated once

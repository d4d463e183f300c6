"""The Connect flow end to end: BFF (in process) -> sandbox over HTTP, flows in a real Redis.

Connect completes with a cached /Authorize by default (the person has just signed in inside the
iframe); `FLINKS_CONNECT_AUTHORIZE=live` signs in again (tests/integration/test_mfa_types.py).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.main import create_app
from app.store import PREFIX
from tests.clock import FakeClock
from tests.conftest import serve_in_process
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings
from tests.integration.connect_steps import complete, start, status
from tests.sandbox.mfa import CHOICE_ANSWERS
from tests.waiting import wait_until_async

POLL_INTERVAL = 10  # seconds: Flinks' pace for its async endpoints

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def assert_no_identifiers(response: httpx.Response, *secrets: str) -> None:
    for value in secrets:
        assert value not in response.text
    assert not UUID.search(response.text), "a UUID-shaped identifier reached the browser"


async def test_session_returns_an_iframe_url_with_a_fresh_token(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client, language="fr", tag="order-42")
    url = urlsplit(started["iframe_url"])
    params = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}" == started["connect_origin"] == sandbox.base_url
    assert url.path == "/v2/"
    assert params["demo"] == ["true"]
    assert params["language"] == ["fr"]
    assert params["tag"] == ["order-42"]
    assert UUID.fullmatch(params["authorizeToken"][0])
    # Connect's redirectUrl is the BFF's own landing page for this flow (app/api/landing.py).
    landing = f"http://127.0.0.1:8000/v1/connect/return/{started['flow_id']}"
    assert params["redirectUrl"] == [landing]
    mints = await sandbox.calls("GenerateAuthorizeToken")
    assert [call["status"] for call in mints] == [200]
    cookie = client.cookies.get("flinks_bff_session")
    assert cookie is not None
    assert len(cookie) >= 43


@pytest.mark.parametrize("username", ["greatday_nomfa", "Greatday", "test_mfa_multiple_choice"])
async def test_connect_completes_with_one_cached_authorize_and_no_second_question(
    client: httpx.AsyncClient, sandbox: Sandbox, username: str
) -> None:
    """The person answered the bank's question inside Connect; the BFF asks none again."""
    started = await start(client)
    answers = {**ANSWERS, **CHOICE_ANSWERS}
    login_id = await sandbox.login_via_connect(started["iframe_url"], username, answers)
    await sandbox.http.delete("/__sandbox/calls")

    response = await complete(client, started["flow_id"], login_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "connected"
    assert body["kind"] == "connect"
    assert body["institution"] == "FlinksCapital"
    assert body["mfa"] is None
    assert_no_identifiers(response, login_id)

    calls = await sandbox.authorize_calls()
    assert len(calls) == 1
    (call,) = calls
    assert call["status"] == 200
    assert call["login_id"] == login_id
    # Flinks' documented follow-up of Connect, and nothing else in the body.
    assert call["most_recent_cached"] is True
    assert call["fields"] == ["LoginId", "MostRecentCached"]
    assert call["token"] != login_id

    assert (await status(client, started["flow_id"]))["status"] == "connected"
    assert len(await sandbox.authorize_calls()) == 1


async def test_a_connect_flow_can_still_sign_in_live_when_configured(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    settings = bff_settings(redis_url, sandbox, FLINKS_CONNECT_AUTHORIZE="live")
    async with serve_in_process(create_app(settings)) as client:
        started = await start(client, language="fr", tag="order-42")
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        await sandbox.http.delete("/__sandbox/calls")
        body = (await complete(client, started["flow_id"], login_id)).json()
    assert body["status"] == "connected"
    (call,) = await sandbox.authorize_calls()
    assert (call["most_recent_cached"], call["save"], call["tag"]) == (False, True, "order-42")


@pytest.mark.parametrize(
    ("username", "code"),
    [
        ("test_disabled_account", "disabled_login"),
        ("test_service_unavailable", "retry_later"),
    ],
)
async def test_error_users_fail_the_flow_with_the_mapped_code(
    client: httpx.AsyncClient, sandbox: Sandbox, username: str, code: str
) -> None:
    started = await start(client)
    login_id = await sandbox.issue_login(username)
    response = await complete(client, started["flow_id"], login_id)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert_no_identifiers(response, login_id)
    assert len(await sandbox.authorize_calls()) == 1


@pytest.mark.parametrize("invalid_login_status", [401, 400])
async def test_a_login_id_nobody_signed_into_fails_the_flow(
    client: httpx.AsyncClient, sandbox: Sandbox, invalid_login_status: int
) -> None:
    """Flinks' error table says 401, its help centre 400: the FlinksCode decides."""
    await sandbox.switch(invalid_login_status=invalid_login_status)
    started = await start(client)
    response = await complete(client, started["flow_id"], str(uuid.uuid4()))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert response.json()["error"]["code"] == "invalid_login"
    (call,) = await sandbox.authorize_calls()
    assert (call["status"], call["flinks_code"]) == (invalid_login_status, "INVALID_LOGIN")


async def test_status_reads_of_a_pending_flow_ask_flinks_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """Its holder follows it in the background; reads only read."""
    await sandbox.switch(dispatched_seconds=600)
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "test_dispatched")
    response = await complete(client, started["flow_id"], login_id)
    assert response.json()["status"] == "pending"
    for _ in range(5):
        assert (await status(client, started["flow_id"]))["status"] == "pending"
    assert len(await sandbox.authorize_calls()) == 1
    assert await sandbox.calls("AuthorizeAsync") == []


async def test_a_replayed_complete_answers_the_status_with_no_upstream_call(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    first, second = await asyncio.gather(
        complete(client, started["flow_id"], login_id),
        complete(client, started["flow_id"], login_id),
    )
    assert [first.status_code, second.status_code] == [200, 200]
    assert "connected" in (first.json()["status"], second.json()["status"])
    # A retry (say, after a lost answer) is told what happened, in the same shape.
    third = await complete(client, started["flow_id"], login_id.upper())
    assert third.status_code == 200
    assert third.json()["status"] == "connected"
    assert len(await sandbox.authorize_calls()) == 1


async def test_another_login_id_for_a_bound_flow_is_a_conflict(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    assert (await complete(client, started["flow_id"], login_id)).status_code == 200
    other = await sandbox.issue_login("Greatday")
    assert other != login_id
    again = await complete(client, started["flow_id"], other)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "conflict"
    assert len(await sandbox.authorize_calls()) == 1


async def test_another_session_cannot_see_complete_or_answer_the_flow(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    flow_id = started["flow_id"]
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    await sandbox.http.delete("/__sandbox/calls")
    await other_browser.post("/v1/connect/sessions", json={})  # it has a session of its own
    for response in (
        await other_browser.get(f"/v1/flows/{flow_id}"),
        await complete(other_browser, flow_id, login_id),
        await other_browser.post(f"/v1/flows/{flow_id}/mfa", json={"responses": {"q": ["a"]}}),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "flow_not_found"
        assert_no_identifiers(response, login_id)
    async with httpx.AsyncClient(
        transport=client._transport, base_url=str(client.base_url)
    ) as anon:
        assert (await anon.get(f"/v1/flows/{flow_id}")).status_code == 404
    assert await sandbox.authorize_calls() == []
    assert (await complete(client, flow_id, login_id)).json()["status"] == "connected"


async def test_an_expired_flow_answers_410_and_calls_nothing(
    redis_url: str, redis: Redis, sandbox: Sandbox
) -> None:
    clock = FakeClock()
    app: FastAPI = create_app(bff_settings(redis_url, sandbox, BFF_FLOW_TTL=60), clock=clock)
    async with serve_in_process(app) as client:
        started = await start(client)
        login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
        clock.advance(61)  # the record outlives its expiry in Redis, to say 410 and not 404
        response = await complete(client, started["flow_id"], login_id)
        assert response.status_code == 410
        assert response.json()["code"] == "flow_expired"
    assert await sandbox.authorize_calls() == []


async def test_bad_input_is_refused_before_anything_happens(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis
) -> None:
    cases = [
        {"return_url": "https://evil.example/"},
        {"options": {"redirectUrl": "https://evil.example/"}},
        {"options": {"authorizeToken": "x"}},
        {"options": {"noSuchOption": "x"}},
        {"language": "de"},
        {"tag": "a&b=c"},
        {"unexpected": 1},
    ]
    for body in cases:
        response = await client.post("/v1/connect/sessions", json=body)
        assert response.status_code in (400, 422), (body, response.text)
        assert "evil.example" not in response.text
    assert await sandbox.calls("GenerateAuthorizeToken") == []
    assert [k async for k in redis.scan_iter(f"{PREFIX}*") if ":rate:" not in k] == []

    started = await start(client)
    for login_id in ("not-a-uuid", "", "1" * 64, "../../etc"):
        response = await complete(client, started["flow_id"], login_id)
        assert response.status_code == 422
    assert await sandbox.authorize_calls() == []


async def test_complete_refuses_fields_it_would_not_use(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """`account_ids` was once accepted and silently dropped: a caller must not believe the BFF
    limited the link to some accounts."""
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    response = await client.post(
        f"/v1/connect/sessions/{started['flow_id']}/complete",
        json={"login_id": login_id, "account_ids": ["a1"]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "account_ids"]]
    assert await sandbox.authorize_calls() == []
    assert (await client.get(f"/v1/flows/{started['flow_id']}")).json()["status"] == "started"


async def test_a_return_url_on_the_allow_list_is_kept_and_connect_lands_on_the_bff(
    client: httpx.AsyncClient,
) -> None:
    started = await start(client, return_url="http://127.0.0.1:8000/")
    params = parse_qs(urlsplit(started["iframe_url"]).query)
    assert params["redirectUrl"] == [
        f"http://127.0.0.1:8000/v1/connect/return/{started['flow_id']}"
    ]
    assert params["jsRedirect"] == ["true"]


async def test_redis_holds_no_plaintext_login_id(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    await complete(client, started["flow_id"], login_id)
    keys = [key async for key in redis.scan_iter("*")]
    assert keys
    for key in keys:
        ttl = await redis.ttl(key)
        if ttl == -2 and ":lease:" in key:
            continue  # released since the scan: on a cluster SCAN visits node after node
        assert ttl > 0
        assert login_id not in key
        kind = await redis.type(key)
        value = await redis.smembers(key) if kind in (b"set", "set") else await redis.get(key)
        assert login_id not in str(value)


@pytest.mark.parametrize("api_key_check", ["required", "optional"])
@pytest.mark.parametrize(
    ("username", "switches"),
    [
        # Connect's processing still runs (a slow user's work), so the cached call is a 202.
        ("test_dispatched", {"dispatched_seconds": 600}),
        # Flinks documents a 202 OPERATION_PENDING right after the Connect sign-in.
        ("greatday_nomfa", {"connect_cached_pending_seconds": 600}),
    ],
)
async def test_a_pending_connect_flow_is_followed_on_authorize_async_until_connected(
    redis_url: str,
    redis: Redis,
    sandbox: Sandbox,
    username: str,
    switches: dict[str, float],
    api_key_check: str,
) -> None:
    await sandbox.switch(api_key_check=api_key_check, **switches)
    clock = FakeClock()
    async with serve_in_process(
        create_app(bff_settings(redis_url, sandbox), clock=clock)
    ) as client:
        started = await start(client)
        flow_id = started["flow_id"]
        login_id = await sandbox.login_via_connect(started["iframe_url"], username)
        completed = await complete(client, flow_id, login_id)
        assert completed.json()["status"] == "pending"
        assert_no_identifiers(completed, login_id)
        (job,) = await sandbox.dispatched()

        # Not before the poll interval has passed on the BFF's clock.
        assert (await status(client, flow_id))["status"] == "pending"
        assert await sandbox.calls("AuthorizeAsync") == []
        clock.advance(POLL_INTERVAL)
        await wait_until_async(
            lambda: sandbox.calls("AuthorizeAsync"), what="the first AuthorizeAsync poll"
        )
        assert (await status(client, flow_id))["status"] == "pending"

        await sandbox.finish(job["request_id"])
        advances = 1

        async def connected() -> bool:
            nonlocal advances
            clock.advance(POLL_INTERVAL)
            advances += 1
            return bool((await status(client, flow_id))["status"] == "connected")

        await wait_until_async(connected, what="the flow to connect", interval=0.1)

    cached, *others = await sandbox.authorize_calls()
    assert others == []  # followed on the async endpoint, never by /Authorize again
    assert (cached["most_recent_cached"], cached["status"]) == (True, 202)
    polls = await sandbox.calls("AuthorizeAsync")
    assert 2 <= len(polls) <= advances  # at most one per poll interval
    assert polls[-1]["status"] == 200
    for poll in polls:
        assert poll["request_id"] == cached["response_request_id"] == job["request_id"]
        assert poll["api_key"] == sandbox.handle.settings.api_key
        assert poll["token"] is None

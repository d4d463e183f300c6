"""The Connect flow end to end: BFF (in process) -> sandbox over HTTP, flows in a real Redis."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.flows.service import PENDING_RECHECK
from app.main import create_app
from app.store import PREFIX
from tests.clock import FakeClock
from tests.conftest import serve_in_process
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


async def start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/connect/sessions", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    started: dict[str, Any] = response.json()
    return started


async def complete(client: httpx.AsyncClient, flow_id: str, login_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/connect/sessions/{flow_id}/complete",
        json={"login_id": login_id, "institution": "FlinksCapital"},
    )


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
    assert "redirectUrl" not in params
    mints = await sandbox.calls("GenerateAuthorizeToken")
    assert [call["status"] for call in mints] == [200]
    cookie = client.cookies.get("flinks_bff_session")
    assert cookie is not None
    assert len(cookie) >= 43


async def test_greatday_nomfa_connects_with_one_live_saved_authorize(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "greatday_nomfa")
    await sandbox.http.delete("/__sandbox/calls")

    response = await complete(client, started["flow_id"], login_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "connected"
    assert body["kind"] == "connect"
    assert body["institution"] == "FlinksCapital"
    assert_no_identifiers(response, login_id)

    calls = await sandbox.authorize_calls()
    assert len(calls) == 1
    (call,) = calls
    assert call["status"] == 200
    assert call["login_id"] == login_id
    assert call["most_recent_cached"] is False
    assert call["save"] is True
    assert call["token"] != login_id

    status = await client.get(f"/v1/flows/{started['flow_id']}")
    assert status.json()["status"] == "connected"
    assert len(await sandbox.authorize_calls()) == 1


async def test_greatday_answers_mfa_and_connects(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "Greatday")
    response = await complete(client, started["flow_id"], login_id)
    body = response.json()
    assert body["status"] == "mfa_required", body
    (challenge,) = body["mfa"]["challenges"]
    assert challenge["prompt"] in ANSWERS
    assert_no_identifiers(response, login_id)

    answered = await client.post(
        f"/v1/flows/{started['flow_id']}/mfa",
        json={"responses": {challenge["prompt"]: ANSWERS[challenge["prompt"]]}},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "connected"
    assert answered.json()["mfa"] is None
    assert_no_identifiers(answered, login_id)

    calls = await sandbox.authorize_calls()
    live, continuation = calls[-2:]
    assert (live["login_id"], live["most_recent_cached"], live["save"]) == (login_id, False, True)
    assert continuation["request_id"] == live["response_request_id"]
    assert continuation["token"] == live["token"]  # Flinks wants the same token back
    assert continuation["status"] == 200


async def test_greatday_wrong_answer_fails_the_flow(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "Greatday")
    body = (await complete(client, started["flow_id"], login_id)).json()
    prompt = body["mfa"]["challenges"][0]["prompt"]
    answered = await client.post(
        f"/v1/flows/{started['flow_id']}/mfa", json={"responses": {prompt: ["Atlantis"]}}
    )
    assert answered.status_code == 200
    assert answered.json()["status"] == "failed"
    assert answered.json()["error"]["code"] == "invalid_security_response"
    again = await client.post(
        f"/v1/flows/{started['flow_id']}/mfa", json={"responses": {prompt: ["Montreal"]}}
    )
    assert again.status_code == 409


async def test_mfa_answers_must_match_the_challenges(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.login_via_connect(started["iframe_url"], "Greatday")
    await complete(client, started["flow_id"], login_id)
    before = len(await sandbox.authorize_calls())
    wrong_prompt = await client.post(
        f"/v1/flows/{started['flow_id']}/mfa", json={"responses": {"Favourite colour?": ["x"]}}
    )
    assert wrong_prompt.status_code == 422
    assert len(await sandbox.authorize_calls()) == before
    status = await client.get(f"/v1/flows/{started['flow_id']}")
    assert status.json()["status"] == "mfa_required"


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


async def test_dispatched_user_is_pending_and_rechecked_at_most_every_few_seconds(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    login_id = await sandbox.issue_login("test_dispatched")
    response = await complete(client, started["flow_id"], login_id)
    assert response.json()["status"] == "pending"
    for _ in range(5):
        assert (await client.get(f"/v1/flows/{started['flow_id']}")).json()["status"] in (
            "pending",
            "connected",
        )
    # Five reads within the re-check interval: no further upstream call.
    assert len(await sandbox.authorize_calls()) == 1


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


async def test_return_url_on_the_allow_list_becomes_the_redirect_url(
    client: httpx.AsyncClient,
) -> None:
    started = await start(client, return_url="http://127.0.0.1:8000/")
    params = parse_qs(urlsplit(started["iframe_url"]).query)
    assert params["redirectUrl"] == ["http://127.0.0.1:8000/"]
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
        assert await redis.ttl(key) > 0
        assert login_id not in key
        assert login_id not in str(await redis.get(key))


async def test_a_pending_flow_is_rechecked_with_a_cached_authorize_once_due(
    redis_url: str, sandbox: Sandbox
) -> None:
    clock = FakeClock()
    async with serve_in_process(
        create_app(bff_settings(redis_url, sandbox), clock=clock)
    ) as client:
        started = await start(client)
        login_id = await sandbox.issue_login("test_dispatched")
        completed = await complete(client, started["flow_id"], login_id)
        assert completed.json()["status"] == "pending"
        clock.advance(PENDING_RECHECK.total_seconds())
        status = await client.get(f"/v1/flows/{started['flow_id']}")
    assert status.status_code == 200
    live, recheck = await sandbox.authorize_calls()
    assert (recheck["login_id"], recheck["most_recent_cached"]) == (login_id, True)
    assert status.json()["status"] == ("connected" if recheck["status"] == 200 else "pending")
    assert_no_identifiers(status, login_id)

"""Flinks custom OAuth through the BFF: start -> bank (sandbox) -> callback -> /Authorize."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.main import create_app
from app.store import PREFIX
from tests.conftest import serve_in_process
from tests.figures import record
from tests.integration.conftest import ANSWERS, Sandbox, bff_settings
from tests.integration.oauth_steps import (
    REDIRECT_URI,
    bank_login,
    linked_callback,
    returned,
    start,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


async def test_start_redirects_to_the_bank_with_a_fresh_bound_state(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis
) -> None:
    response = await start(client)
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{sandbox.base_url}/oauth/bank/")
    assert response.headers["cache-control"] == "no-store"
    assert client.cookies.get("flinks_bff_session")
    (call,) = await sandbox.calls("OAuthAuthorize")
    assert call["status"] == 302
    assert sorted(call["query"]) == ["institution_id", "lang", "redirect_uri", "state"]
    state_keys = [k async for k in redis.scan_iter(f"{PREFIX}state:*")]
    assert len(state_keys) == 1
    assert 0 < await redis.ttl(state_keys[0]) <= 600


@pytest.mark.parametrize("oauth_token", ["optional", "required"])
async def test_greatday_nomfa_links_and_returns_with_flow_id_and_status_only(
    client: httpx.AsyncClient, sandbox: Sandbox, oauth_token: str
) -> None:
    # Flinks documents no token on /v3/oauth/authorize; the BFF sends one, so either reading
    # of the sandbox lets it through.
    await sandbox.switch(oauth_token=oauth_token)
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    assert callback.login_id is not None
    response = await client.get(callback.path_and_query)
    query = returned(response)
    assert set(query) == {"flow_id", "status"}
    assert query["status"] == ["connected"]
    assert callback.login_id not in response.headers["location"]
    assert callback.state not in response.headers["location"]
    (call,) = await sandbox.authorize_calls()
    assert (call["login_id"], call["most_recent_cached"], call["save"]) == (
        callback.login_id,
        False,
        True,
    )
    flow = await client.get(f"/v1/flows/{query['flow_id'][0]}")
    assert flow.json()["status"] == "connected"
    assert flow.json()["kind"] == "oauth"
    assert not UUID.search(flow.text)


async def test_greatday_then_mfa_through_the_flow_endpoint(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "Greatday")
    query = returned(await client.get(callback.path_and_query))
    assert query["status"] == ["mfa_required"]
    flow_id = query["flow_id"][0]
    flow = (await client.get(f"/v1/flows/{flow_id}")).json()
    prompt = flow["mfa"]["challenges"][0]["prompt"]
    answered = await client.post(
        f"/v1/flows/{flow_id}/mfa", json={"responses": {prompt: ANSWERS[prompt]}}
    )
    assert answered.json()["status"] == "connected"


async def test_denied_at_the_bank_fails_the_flow_without_calling_authorize(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa", deny=True)
    assert callback.login_id is None
    response = await client.get(callback.path_and_query)
    query = returned(response)
    assert query["status"] == ["failed"]
    assert query["error"] == ["oauth_access_denied"]
    assert "denied the access" not in response.text + response.headers["location"]
    assert await sandbox.authorize_calls() == []
    # The error callback consumed the state too.
    assert (await client.get(callback.path_and_query)).status_code == 403


@pytest.mark.parametrize(
    ("username", "status", "code"),
    [
        ("test_disabled_account", "failed", "disabled_login"),
        ("test_service_unavailable", "failed", "retry_later"),
        ("test_dispatched", "pending", None),
    ],
)
async def test_flinks_error_users(
    client: httpx.AsyncClient, sandbox: Sandbox, username: str, status: str, code: str | None
) -> None:
    callback = await linked_callback(client, sandbox.http, username)
    query = returned(await client.get(callback.path_and_query))
    assert query["status"] == [status]
    assert query.get("error") == ([code] if code else None)
    assert len(await sandbox.authorize_calls()) == 1


async def test_a_replayed_callback_is_refused_without_an_upstream_call(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    assert (await client.get(callback.path_and_query)).status_code == 303
    replay = await client.get(callback.path_and_query)
    assert replay.status_code == 403
    assert replay.json()["code"] == "state_invalid"
    assert len(await sandbox.authorize_calls()) == 1


async def test_a_callback_in_another_browser_is_refused_and_does_not_burn_the_state(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    await start(other_browser)  # it has a session cookie of its own
    foreign = await other_browser.get(callback.path_and_query)
    assert foreign.status_code == 403
    assert foreign.json()["code"] == "state_invalid"
    assert await sandbox.authorize_calls() == []
    assert returned(await client.get(callback.path_and_query))["status"] == ["connected"]


async def test_a_callback_without_a_cookie_is_refused(
    running_app: object, client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    client.cookies.clear()
    response = await client.get(callback.path_and_query)
    assert response.status_code == 403
    assert await sandbox.authorize_calls() == []


async def test_an_expired_state_is_refused(redis_url: str, redis: Redis, sandbox: Sandbox) -> None:
    app: FastAPI = create_app(bff_settings(redis_url, sandbox, BFF_STATE_TTL=60))
    async with serve_in_process(app) as client:
        callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
        [key] = [key async for key in redis.scan_iter(f"{PREFIX}state:*")]
        assert 0 < await redis.ttl(key) <= 60
        # The state's TTL runs on Redis' clock: its time is up when Redis says so.
        assert await redis.pexpireat(key, 1)
        response = await client.get(callback.path_and_query)
        assert response.status_code == 403
        assert response.json()["code"] == "state_invalid"
    assert await sandbox.authorize_calls() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=evil.example;proto=https"},
    ],
)
async def test_redirect_uri_is_the_configured_constant_whatever_the_headers_say(
    client: httpx.AsyncClient, sandbox: Sandbox, headers: dict[str, str]
) -> None:
    response = await client.get(
        "/v1/oauth/start",
        params={"institution": "FlinksCapital", "return_url": "http://127.0.0.1:8000/"},
        headers=headers,
    )
    assert response.status_code == 303
    callback = await bank_login(sandbox.http, response.headers["location"], "greatday_nomfa")
    assert callback.path_and_query.startswith("/v1/oauth/callback?")  # bank_login checked
    assert "evil" not in callback.path_and_query  # the prefix REDIRECT_URI is byte-equal
    assert REDIRECT_URI.startswith("http://127.0.0.1:8000/")


async def test_start_refuses_bad_input_before_anything_happens(
    client: httpx.AsyncClient, sandbox: Sandbox, redis: Redis
) -> None:
    for params in (
        {"institution": "FlinksCapital", "return_url": "https://evil.example/"},
        {"institution": "../../x", "return_url": "http://127.0.0.1:8000/"},
        {"institution": "A" * 65},
        {"institution": "FlinksCapital", "language": "xx"},
        {},
    ):
        response = await client.get("/v1/oauth/start", params=params)
        assert response.status_code in (400, 422), (params, response.text)
        assert "location" not in response.headers
        assert "evil" not in response.text
    assert await sandbox.calls() == []
    assert [k async for k in redis.scan_iter(f"{PREFIX}*") if ":rate:" not in k] == []


async def test_spa_session_answers_the_bank_url_as_json(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    response = await client.post(
        "/v1/oauth/sessions",
        json={"institution": "FlinksCapital", "return_url": "http://127.0.0.1:8000/"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["authorize_url"].startswith(f"{sandbox.base_url}/oauth/bank/")
    callback = await bank_login(sandbox.http, body["authorize_url"], "greatday_nomfa")
    query = returned(await client.get(callback.path_and_query))
    assert query["flow_id"] == [body["flow_id"]]


def _payloads() -> list[str]:
    from pathlib import Path

    path = Path(__file__).parent.parent / "data" / "openredirects.txt"
    return path.read_text(encoding="utf-8").splitlines()


async def test_no_open_redirect_payload_produces_an_off_list_location(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    payloads = _payloads()
    assert len(payloads) >= 559
    allowed = ("http://127.0.0.1:8000/", "http://localhost:8000/")
    off_list = 0
    for payload in payloads:
        for response in (
            await client.get(
                "/v1/oauth/start", params={"institution": "FlinksCapital", "return_url": payload}
            ),
            await client.post(
                "/v1/oauth/sessions", json={"institution": "FlinksCapital", "return_url": payload}
            ),
            await client.post("/v1/connect/sessions", json={"return_url": payload}),
        ):
            assert response.status_code < 500
            location = response.headers.get("location")
            if location and not location.startswith((sandbox.base_url, *allowed)):
                off_list += 1
            if response.status_code in (200, 201, 303):
                # Only the empty payload (= no return_url) may start a flow.
                assert payload == "", payload
    record(
        "open redirects",
        f"{len(payloads)} payloads (the corpus' lines, one empty) x 3 entry points, "
        f"off-list Locations = {off_list}",
    )
    assert off_list == 0


async def test_the_callback_never_returns_anywhere_but_the_flow_return_url(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    hostile = (
        callback.path_and_query
        + "&return_url=https://evil.example/&redirect_uri=https://evil.example/"
        + "&institution=Evil&next=//evil.example"
    )
    response = await client.get(hostile)
    location = urlsplit(response.headers["location"])
    assert location.netloc == "127.0.0.1:8000"
    assert "evil" not in response.headers["location"]
    assert parse_qs(location.query)["status"] == ["connected"]


async def test_a_browser_with_an_invalid_state_gets_a_page_that_quotes_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    callback = await linked_callback(client, sandbox.http, "greatday_nomfa")
    client.cookies.clear()
    hostile = callback.path_and_query + "&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    response = await client.get(hostile, headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "could not be completed" in response.text
    assert callback.state not in response.text
    assert "script" not in response.text
    assert 'href="http://127.0.0.1:8000/"' in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert await sandbox.authorize_calls() == []

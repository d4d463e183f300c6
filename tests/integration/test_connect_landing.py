"""Connect's redirectUrl landing page (app/api/landing.py) at the HTTP level: where Connect is
sent, the page's headers, what a bad flow id gets, that the loginId in its query is never read
nor logged, and that it is served in production, where the demo is not.

The page's script (what it does with the loginId) is driven in Chromium: tests/e2e."""

from __future__ import annotations

import base64
import logging
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.api.landing import LANDING_CSP
from app.main import create_app
from tests.conftest import BASE_URL, asgi_client, make_settings
from tests.integration.conftest import Sandbox

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
LOGIN_ID = "8b35f6c8-e7b6-41d3-98f8-08d68b7f8d31"
LANDING = re.compile(r'data-flow-id="([^"]*)" data-return-url="([^"]*)"')


async def start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/connect/sessions", json=body)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


def landing_path(flow_id: str) -> str:
    return f"/v1/connect/return/{flow_id}"


async def open_landing(
    client: httpx.AsyncClient, flow_id: str, headers: dict[str, str] = HTML
) -> httpx.Response:
    """What the browser asks when Connect navigates it to redirectUrl."""
    return await client.get(
        landing_path(flow_id),
        params={"loginId": LOGIN_ID, "institution": "FlinksCapital"},
        headers=headers,
    )


def page_data(response: httpx.Response) -> tuple[str, str]:
    """The flow id and return URL the page's script will use."""
    found = LANDING.search(response.text)
    assert found is not None, response.text
    return found[1], found[2]


def assert_landing_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
    # Its own policy only: the API's `default-src 'none'` would also block the page's script.
    assert response.headers.get_list("content-security-policy") == [LANDING_CSP]
    assert "script-src 'self'" in LANDING_CSP
    assert "unsafe" not in LANDING_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert LOGIN_ID not in response.text


async def test_connect_is_sent_to_the_landing_page_and_the_flow_keeps_its_return_url(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client, return_url=f"{BASE_URL}/")
    params = parse_qs(urlsplit(started["iframe_url"]).query)
    # From BFF_PUBLIC_URL, never from the request; the flow id is a path segment, so however
    # Flinks appends ?loginId=… the flow id stays intact.
    assert params["redirectUrl"] == [f"{BASE_URL}{landing_path(started['flow_id'])}"]
    assert params["jsRedirect"] == ["true"]

    response = await open_landing(client, started["flow_id"])
    assert response.status_code == 200, response.text
    assert page_data(response) == (started["flow_id"], f"{BASE_URL}/")

    # A flow started without a return URL goes back to the first allowed one, as OAuth does.
    other = await start(client)
    assert page_data(await open_landing(client, other["flow_id"]))[1] == f"{BASE_URL}/"


async def test_the_redirect_url_ignores_the_host_the_request_came_to(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/connect/sessions",
        json={},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 201, response.text
    [redirect_url] = parse_qs(urlsplit(response.json()["iframe_url"]).query)["redirectUrl"]
    assert redirect_url.startswith(f"{BASE_URL}/v1/connect/return/")


async def test_the_landing_page_has_strict_headers_and_changes_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    started = await start(client)
    await sandbox.http.delete("/__sandbox/calls")

    response = await open_landing(client, started["flow_id"])

    assert response.status_code == 200
    assert_landing_headers(response)
    assert '<script src="/v1/connect/landing.js" defer></script>' in response.text
    # The GET only serves the page: the script completes the flow through POST .../complete.
    assert await sandbox.authorize_calls() == []
    flow = (await client.get(f"/v1/flows/{started['flow_id']}")).json()
    assert flow["status"] == "started"


@pytest.mark.parametrize(
    "flow_id",
    [
        "AAAAAAAAAAAAAAAAAAAAAA",  # well formed, no such flow
        "not-a-flow-id",
        "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    ],
    ids=["unknown", "malformed", "markup"],
)
async def test_a_bad_flow_id_gets_the_page_without_a_flow(
    client: httpx.AsyncClient, sandbox: Sandbox, flow_id: str
) -> None:
    response = await open_landing(client, flow_id)
    # Still the page (its script takes the loginId out of the address bar), with no flow to
    # complete and the way back to the app.
    assert response.status_code == 404
    assert_landing_headers(response)
    assert page_data(response) == ("", f"{BASE_URL}/")
    assert "onerror" not in response.text
    assert await sandbox.authorize_calls() == []


async def test_another_browser_or_an_oauth_flow_gets_no_flow(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient
) -> None:
    started = await start(client)
    response = await open_landing(other_browser, started["flow_id"])
    assert response.status_code == 404
    assert page_data(response) == ("", f"{BASE_URL}/")

    oauth = await client.post("/v1/oauth/sessions", json={"institution": "FlinksCapital"})
    assert oauth.status_code == 201, oauth.text
    response = await open_landing(client, oauth.json()["flow_id"])
    assert response.status_code == 404
    assert page_data(response)[0] == ""


async def test_a_bad_flow_id_is_a_problem_for_a_caller_that_wants_no_html(
    client: httpx.AsyncClient,
) -> None:
    response = await open_landing(client, "AAAAAAAAAAAAAAAAAAAAAA", {"Accept": "application/json"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "flow_not_found"
    assert LOGIN_ID not in response.text


async def test_the_login_id_in_the_query_is_never_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    started = await start(client)
    with caplog.at_level(logging.DEBUG):
        for flow_id in (started["flow_id"], "AAAAAAAAAAAAAAAAAAAAAA", "bad"):
            await open_landing(client, flow_id)
    # The test client's own httpx log line holds the URL it asked for: not the BFF's.
    records = [r for r in caplog.records if not (r.name == "httpx" and BASE_URL in r.getMessage())]
    assert any(getattr(r, "route", None) == "/v1/connect/return/{flow_id}" for r in records)
    for record in records:
        assert LOGIN_ID not in f"{record.getMessage()} {record.args!r} {record.__dict__!r}"


async def test_the_landing_page_and_its_files_are_served_in_production(redis_url: str) -> None:
    settings = make_settings(
        redis_url,
        BFF_ENV="production",
        BFF_AUTH="session",
        BFF_PUBLIC_URL="https://bff.example.com",
        BFF_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        BFF_RETURN_URLS="https://app.example.com/linked",
        BFF_CORS_ORIGINS="https://app.example.com",
        FLINKS_CUSTOMER_ID="43387ca6-0391-4c82-857d-70d95f087ecb",
        FLINKS_SECRET_KEY="prod-secret-value",
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager, asgi_client(manager.app) as client:
        assert (await client.get("/web/app.js")).status_code == 404  # no demo here
        script = await client.get("/v1/connect/landing.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "history.replaceState" in script.text
        style = await client.get("/v1/connect/landing.css")
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")
        page = await open_landing(client, "AAAAAAAAAAAAAAAAAAAAAA")
        assert page.status_code == 404
        assert_landing_headers(page)
        assert page_data(page) == ("", "https://app.example.com/linked")

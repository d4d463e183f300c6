"""Connect on mobile (app/flows/hosted.py, app/api/hosted.py) at the HTTP level: a scripted app
and a separate "system browser" (two cookie jars) link through the hosted page and the handoff
code, against the sandbox and a real Redis; the ticket, the page cookie and the completion each
refuse what they must with `handoff_invalid`, and the loginId reaches no URL and no answer.

The page's script is driven in Chromium: tests/e2e/test_hosted_connect.py."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.types import ASGIApp

from app.api.hosted import LOCAL_COOKIE, hosted_csp
from tests.conftest import BASE_URL, asgi_client
from tests.integration.conftest import Sandbox

RETURN_URL = f"{BASE_URL}/"


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class Native:
    flow_id: str
    hosted_url: str
    ticket: str
    verifier: str
    started: dict[str, Any]

    @property
    def base(self) -> str:
        return f"/v1/connect/hosted/{self.flow_id}"


async def start_native(app: httpx.AsyncClient, **body: Any) -> Native:
    verifier = secrets.token_urlsafe(48)
    response = await app.post(
        "/v1/connect/sessions",
        json={
            "return_url": RETURN_URL,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            **body,
        },
    )
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    hosted_url = started["hosted_url"]
    page, _, fragment = hosted_url.partition("#")
    [ticket] = parse_qs(fragment)["ticket"]
    return Native(started["flow_id"], hosted_url, ticket, verifier, started)


async def open_page(browser: httpx.AsyncClient, native: Native, **body: Any) -> httpx.Response:
    return await browser.post(f"{native.base}/open", json=body)


async def complete(browser: httpx.AsyncClient, native: Native, login_id: str) -> httpx.Response:
    return await browser.post(
        f"{native.base}/complete", json={"login_id": login_id, "institution": "FlinksCapital"}
    )


def refused(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.json()["code"] == "handoff_invalid"


@pytest.fixture
async def browser(other_browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The system browser: its own cookie jar, none of the app's."""
    return other_browser


async def test_an_app_links_through_the_hosted_page_and_redeems_the_code(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    native = await start_native(client, options={"customerName": "Example Inc"})
    # No token is minted for the app: the page mints its own when it opens.
    assert native.started["iframe_url"] is None
    assert native.hosted_url.startswith(f"{BASE_URL}/v1/connect/hosted/{native.flow_id}#ticket=")
    assert await sandbox.calls("GenerateAuthorizeToken") == []

    page = await browser.get(urlsplit(native.hosted_url).path)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert page.headers.get_list("referrer-policy") == ["no-referrer"]
    csp = hosted_csp(sandbox.base_url)
    assert page.headers.get_list("content-security-policy") == [csp]
    assert f'data-flow-id="{native.flow_id}"' in page.text
    assert '<script src="/v1/connect/hosted.js" defer></script>' in page.text

    opened = await open_page(browser, native, ticket=native.ticket)
    assert opened.status_code == 200, opened.text
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{LOCAL_COOKIE}=")
    assert f"Path=/v1/connect/hosted/{native.flow_id}/" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    iframe_url = opened.json()["iframe_url"]
    assert opened.json()["connect_origin"] == sandbox.base_url
    params = parse_qs(urlsplit(iframe_url).query)
    # Connect's redirectUrl is the page itself: a Connect that ignores jsRedirect comes back.
    assert params["redirectUrl"] == [f"{BASE_URL}/v1/connect/hosted/{native.flow_id}"]
    assert params["customerName"] == ["Example Inc"]
    assert params["jsRedirect"] == ["true"]

    login_id = await sandbox.login_via_connect(iframe_url, "greatday_nomfa")
    done = await complete(browser, native, login_id)
    assert done.status_code == 200, done.text
    location = urlsplit(done.json()["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    query = parse_qs(location.query)
    assert query["flow_id"] == [native.flow_id]
    [code] = query["handoff_code"]
    assert login_id not in done.text
    # Nothing asks Flinks until the app redeems with its verifier.
    assert await sandbox.authorize_calls() == []

    redeemed = await client.post(
        f"/v1/flows/{native.flow_id}/handoff",
        json={"handoff_code": code, "code_verifier": native.verifier},
    )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["status"] == "connected"
    assert login_id not in redeemed.text
    links = (await client.get("/v1/links")).json()
    assert login_id not in str(links)
    assert [link["status"] for link in links["links"]] == ["active"]
    # The cached /Authorize of Connect (FLINKS_CONNECT_AUTHORIZE), once.
    [authorize] = await sandbox.authorize_calls()
    assert authorize["most_recent_cached"] is True
    assert authorize["login_id"] == login_id


async def test_the_ticket_opens_the_page_once_and_a_wrong_one_burns_it(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    native = await start_native(client)
    assert (await open_page(browser, native, ticket=native.ticket)).status_code == 200
    # A second browser with the same ticket (a leaked URL) gets nothing.
    assert refused(await open_page(other, native, ticket=native.ticket))

    guessed = await start_native(client)
    assert refused(await open_page(other, guessed, ticket=secrets.token_urlsafe(32)))
    assert refused(await open_page(browser, guessed, ticket=guessed.ticket))


async def test_a_reload_reopens_with_the_page_cookie_only(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    native = await start_native(client)
    first = await open_page(browser, native, ticket=native.ticket)
    again = await open_page(browser, native)
    assert again.status_code == 200, again.text
    assert "set-cookie" not in again.headers
    # A fresh token each time: a token is single use.
    token = parse_qs(urlsplit(again.json()["iframe_url"]).query)["authorizeToken"]
    assert token != parse_qs(urlsplit(first.json()["iframe_url"]).query)["authorizeToken"]
    assert refused(await open_page(other, native))


async def test_only_the_page_that_opened_completes_and_only_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    other: httpx.AsyncClient,
    sandbox: Sandbox,
) -> None:
    native = await start_native(client)
    opened = await open_page(browser, native, ticket=native.ticket)
    login_id = await sandbox.login_via_connect(opened.json()["iframe_url"], "greatday_nomfa")
    # Another browser (no page cookie), and the app itself, cannot hand a loginId in.
    assert refused(await complete(other, native, login_id))
    assert refused(await complete(client, native, login_id))
    # Nor through the browser flow's completion.
    legacy = await client.post(
        f"/v1/connect/sessions/{native.flow_id}/complete", json={"login_id": login_id}
    )
    assert legacy.status_code == 409

    done = await complete(browser, native, login_id)
    assert done.status_code == 200
    # The same page again with the same loginId (a lost answer; Connect navigating back):
    # the same answer, no second code. Another loginId: refused.
    assert (await complete(browser, native, login_id)).json() == done.json()
    assert refused(await complete(browser, native, await sandbox.issue_login("Greatday")))
    # Once redeemed, the page can neither complete nor reopen.
    [code] = parse_qs(urlsplit(done.json()["location"]).query)["handoff_code"]
    redeemed = await client.post(
        f"/v1/flows/{native.flow_id}/handoff",
        json={"handoff_code": code, "code_verifier": native.verifier},
    )
    assert redeemed.status_code == 200
    assert refused(await complete(browser, native, login_id))
    assert refused(await open_page(browser, native))


async def test_a_browser_flow_has_no_hosted_page(
    client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/connect/sessions", json={"return_url": RETURN_URL})
    assert response.status_code == 201
    started = response.json()
    assert started["hosted_url"] is None
    assert started["iframe_url"] is not None
    fake = Native(started["flow_id"], "", secrets.token_urlsafe(32), "", started)
    assert refused(await open_page(browser, fake, ticket=fake.ticket))
    assert refused(await open_page(browser, fake))


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"code_challenge_method": "plain"}, 400, "handoff_invalid", id="plain"),
        pytest.param({"code_challenge": "short"}, 400, "handoff_invalid", id="malformed"),
        pytest.param({"return_url": None}, 422, "validation_error", id="no-return-url"),
        pytest.param(
            {"return_url": "https://evil.example/"}, 400, "return_url_not_allowed", id="foreign"
        ),
    ],
)
async def test_a_native_start_refuses_a_bad_challenge_or_return_url(
    client: httpx.AsyncClient, sandbox: Sandbox, body: dict[str, Any], status: int, code: str
) -> None:
    verifier = secrets.token_urlsafe(48)
    response = await client.post(
        "/v1/connect/sessions",
        json={
            "return_url": RETURN_URL,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            **body,
        },
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await sandbox.calls("GenerateAuthorizeToken") == []


async def test_the_page_never_reads_its_query_and_checks_the_flow_id(
    browser: httpx.AsyncClient,
) -> None:
    login_id = "8b35f6c8-e7b6-41d3-98f8-08d68b7f8d31"
    page = await browser.get("/v1/connect/hosted/not-a-flow", params={"loginId": login_id})
    assert page.status_code == 200
    assert 'data-flow-id=""' in page.text
    assert login_id not in page.text
    assert (await browser.get("/v1/connect/hosted.js")).status_code == 200
    assert (await browser.get("/v1/connect/hosted.css")).status_code == 200


@pytest.fixture
async def other(running_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A third cookie jar (another browser, another device)."""
    async with asgi_client(running_app) as third:
        yield third

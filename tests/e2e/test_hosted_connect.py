"""Connect on mobile, in Chromium: the hosted Connect page (app/web/hosted.js) a native app
opens. A scripted app (its own HTTP client and cookie jar) starts the flow with a PKCE
challenge; the browser opens `hosted_url`, links greatday_nomfa through the sandbox's Connect
page and ends on the app's return URL with flow_id and handoff_code; the app redeems the code
with its verifier and the flow is connected with a link. The loginId reaches no URL."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Route, expect

from tests.e2e.conftest import Demo, Stack

pytestmark = pytest.mark.e2e

APP_PAGE = "<!doctype html><title>the app</title><p>Back in the app.</p>"


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@pytest.mark.parametrize("js_redirect", ["honour", "ignore"])
def test_the_hosted_page_links_and_returns_to_the_app_with_a_handoff_code(
    demo: Demo, stack: Stack, http: httpx.Client, js_redirect: str
) -> None:
    # `ignore`: Connect posts REDIRECT, then navigates the whole page back to its redirectUrl
    # (the hosted page itself) with ?loginId=…; both end on the same return URL.
    stack.switches(http, js_redirect=js_redirect)
    verifier = secrets.token_urlsafe(48)
    return_url = f"{stack.base_url}/"
    with httpx.Client(base_url=stack.base_url, timeout=10) as app:
        started = app.post(
            "/v1/connect/sessions",
            json={
                "return_url": return_url,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            },
        )
        assert started.status_code == 201, started.text
        flow_id = started.json()["flow_id"]
        hosted_url = started.json()["hosted_url"]

        # The return URL is the app's (a Universal Link / App Link): here a stand-in page.
        landed = re.compile(re.escape(return_url) + r"\?.*handoff_code=.*")

        def app_page(route: Route) -> None:
            route.fulfill(status=200, content_type="text/html", body=APP_PAGE)

        demo.page.route(landed, app_page)
        demo.page.goto(hosted_url)
        frame = demo.page.frame_locator("#hosted-connect")
        frame.locator("#institution-FlinksCapital").wait_for()
        # The ticket left the address bar (and this history entry) as soon as the page ran.
        assert demo.page.url == f"{stack.base_url}/v1/connect/hosted/{flow_id}"
        demo.sign_in(frame, "greatday_nomfa")

        demo.page.wait_for_url(landed)
        expect(demo.page.get_by_text("Back in the app.")).to_be_visible()
        query = parse_qs(urlsplit(demo.page.url).query)
        assert query["flow_id"] == [flow_id]
        [code] = query["handoff_code"]
        # Nothing asked Flinks to authorize yet: that waits for the app's verifier.
        assert stack.authorize_calls(http) == []

        redeemed = app.post(
            f"/v1/flows/{flow_id}/handoff",
            json={"handoff_code": code, "code_verifier": verifier},
        )
        assert redeemed.status_code == 200, redeemed.text
        assert redeemed.json()["status"] == "connected"
        links = app.get("/v1/links").json()["links"]
        assert [link["status"] for link in links] == ["active"]

    [authorize] = stack.authorize_calls(http)
    login_id = authorize["login_id"]
    assert login_id not in redeemed.text
    assert login_id not in str(links)
    # The loginId never rode on a URL the browser sent to the BFF, except, from a Connect that
    # ignores jsRedirect, on the hosted page's own address (which its script clears at once).
    assert len(demo.api_calls("POST", rf"/v1/connect/hosted/{flow_id}/open")) == 1
    assert demo.api_calls("POST", rf"/v1/connect/hosted/{flow_id}/complete")
    carrying = [
        urlsplit(r.url).path
        for r in demo.requests
        if r.url.startswith(stack.base_url + "/") and login_id in r.url
    ]
    # (Whether Connect's navigation or the page's own return to the app comes first is a race
    # of the two; both end on the same return URL.)
    allowed = {f"/v1/connect/hosted/{flow_id}"} if js_redirect == "ignore" else set()
    assert set(carrying) <= allowed

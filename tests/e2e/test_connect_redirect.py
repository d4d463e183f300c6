"""How Flinks Connect ends, in Chromium: both shapes of its REDIRECT message, and a Connect that
ignores jsRedirect and navigates the whole window to redirectUrl (the BFF's landing page).

The sandbox's switches choose Connect's behaviour (app/sandbox/README.md): `redirect_message`
(`url_only` as Flinks documents it, `top_level` as newer pages show it, or `both`) and
`js_redirect` (`honour`, or `ignore` as a Connect that does not know the parameter would)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import FrameLocator, expect

from tests.e2e.conftest import Demo, Stack
from tests.e2e.test_demo import UUID, assert_plain_words, expect_connected, json_body

pytestmark = pytest.mark.e2e

# Every message the page receives from Connect's origin, as sent (a listener of the test's,
# beside the page's own).
RECORD_CONNECT_MESSAGES = """(origin) => {
  window.__connect = [];
  window.addEventListener("message", (event) => {
    if (event.origin === origin) window.__connect.push(event.data);
  });
}"""


def redirect_messages(demo: Demo) -> list[dict[str, Any]]:
    messages: list[Any] = demo.page.evaluate("window.__connect")
    return [m for m in messages if isinstance(m, dict) and m.get("step") == "REDIRECT"]


def connect_with(demo: Demo, username: str = "greatday_nomfa") -> FrameLocator:
    demo.open()
    demo.page.evaluate(RECORD_CONNECT_MESSAGES, demo.stack.connect_origin)
    frame = demo.start_connect()
    demo.sign_in(frame, username)
    return frame


@pytest.mark.parametrize("shape", ["url_only", "top_level", "both"])
def test_each_redirect_shape_links(
    demo: Demo, stack: Stack, http: httpx.Client, shape: str
) -> None:
    stack.switches(http, redirect_message=shape)
    connect_with(demo)

    expect_connected(demo, "Flinks Connect")
    [message] = redirect_messages(demo)
    [complete] = demo.completes()
    login_id = json_body(complete)["login_id"]
    assert UUID.fullmatch(login_id)
    assert json_body(complete)["institution"] == "FlinksCapital"
    # The switch shaped the message as documented, and the page read the loginId from it.
    if shape == "top_level":
        assert "url" not in message
        assert message["loginId"] == login_id
    else:
        url = urlsplit(message["url"])
        flow_id = urlsplit(complete.url).path.split("/")[-2]
        # The BFF's redirectUrl: its landing page for this flow, on the BFF's own origin.
        assert f"{url.scheme}://{url.netloc}{url.path}" == (
            f"{stack.base_url}/v1/connect/return/{flow_id}"
        )
        assert parse_qs(url.query)["loginId"] == [login_id]
        assert ("loginId" in message) is (shape == "both")
    # Connect did not navigate anywhere (jsRedirect honoured): no landing page.
    assert demo.api_calls("GET", r"/v1/connect/return/.*") == []
    assert demo.page.url == stack.demo_url
    assert_plain_words(demo.steps())


# Sent from inside the Connect iframe itself (its origin, its window): only the shape is odd.
ODD_REDIRECTS = """([loginId, other, landing]) => {
  const q = "?loginId=" + loginId;
  const otherFlow = landing.replace(/[^/]+$/, "AAAAAAAAAAAAAAAAAAAAAA");
  const odd = [
    {step: "REDIRECT", url: "https://evil.example/thanks?loginId=" + loginId},
    {step: "REDIRECT", url: otherFlow + q},
    {step: "REDIRECT", url: landing + "?loginId=" + loginId + "&loginId=" + other},
    {step: "REDIRECT", url: landing + "#loginId=" + loginId},
    {step: "REDIRECT", url: "javascript:alert(1)//?loginId=" + loginId},
    {step: "REDIRECT", url: landing.replace("//", "//user:pw@") + "?loginId=" + loginId},
    {step: "REDIRECT", loginId: other, url: landing + "?loginId=" + loginId},
    {step: "REDIRECT", institution: "OtherBank", url: landing + q + "&institution=FlinksCapital"},
    {step: "REDIRECT", url: landing + "?loginId=not-a-uuid"},
    {step: "REDIRECT", url: 42},
    {step: "REDIRECT"},
  ];
  for (const message of odd) parent.postMessage(message, "*");
  parent.postMessage({step: "APP_ONLINE"}, "*");  // a marker: handled after all of the above
  return odd.length;
}"""


def test_an_odd_redirect_from_connect_itself_is_refused(demo: Demo, stack: Stack) -> None:
    demo.open()
    frame = demo.start_connect()
    connect_frame = next(f for f in demo.page.frames if f.url.startswith(stack.connect_origin))
    iframe_url = demo.page.locator("#connect-frame").get_attribute("src") or ""
    [landing] = parse_qs(urlsplit(iframe_url).query)["redirectUrl"]

    connect_frame.evaluate(
        ODD_REDIRECTS,
        ["8b35f6c8-e7b6-41d3-98f8-08d68b7f8d31", "0f3b0b8e-1b7a-4a53-9d43-3b2f7f1f3e11", landing],
    )
    # Messages are handled in order: once the marker's step shows, the odd ones were seen.
    expect(demo.page.locator("#steps li").last).to_have_text("Flinks Connect is online again.")

    assert demo.completes() == []
    expect(demo.status).to_have_attribute("data-state", "waiting")
    expect(demo.page.locator("#connect-frame")).to_have_count(1)

    # The listener is still waiting for the real REDIRECT, and takes it.
    demo.sign_in(frame, "greatday_nomfa")
    expect_connected(demo, "Flinks Connect")
    assert len(demo.completes()) == 1


def test_ignored_js_redirect_with_a_usable_message_links_on_the_page(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    # Connect posts REDIRECT, then navigates a moment later: the page takes the message and
    # removes the iframe, and with it the navigation Connect had scheduled.
    stack.switches(http, js_redirect="ignore")
    connect_with(demo)

    expect_connected(demo, "Flinks Connect")
    assert len(demo.completes()) == 1
    assert demo.api_calls("GET", r"/v1/connect/return/.*") == []
    assert demo.page.url == stack.demo_url


# A page that does not act on Connect's REDIRECT message (an older Connect whose REDIRECT
# carries no loginId, "REDIRECT but no loginId" in contract 12.1 #4, or a message lost): the
# test's listener, added before the page's own, stops it from reaching the page.
SWALLOW_REDIRECT = """window.addEventListener("message", (event) => {
  const data = event.data;
  if (data && (data.step === "REDIRECT" || String(data).includes("REDIRECT"))) {
    event.stopImmediatePropagation();
  }
}, true);"""


def test_connect_that_navigates_the_window_links_through_the_landing_page(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    stack.switches(http, js_redirect="ignore", redirect_message="url_only")
    demo.page.add_init_script(SWALLOW_REDIRECT)
    demo.open()
    frame = demo.start_connect()
    demo.sign_in(frame, "greatday_nomfa")

    # Connect took the whole window to redirectUrl?loginId=…; the landing page completed the
    # flow and replaced itself with the demo, which shows the BFF's answer.
    expect_connected(demo, "Flinks Connect")
    assert demo.page.url == stack.demo_url

    [landing] = [
        r for r in demo.requests if r.is_navigation_request() and "/v1/connect/return/" in r.url
    ]
    landed = urlsplit(landing.url)
    flow_id = landed.path.rsplit("/", 1)[1]
    [login_id] = parse_qs(landed.query)["loginId"]
    assert UUID.fullmatch(login_id)
    assert landing.frame == demo.page.main_frame  # the top window, not the iframe

    # Completed once, by the landing page, same origin, as JSON.
    [complete] = demo.completes()
    assert complete.url == f"{stack.base_url}/v1/connect/sessions/{flow_id}/complete"
    assert json_body(complete) == {"login_id": login_id, "institution": "FlinksCapital"}
    assert "referer" not in complete.all_headers()  # the landing page sends no Referer
    assert len([c for c in stack.authorize_calls(http) if c["login_id"] == login_id]) == 1

    # Back on the demo with flow_id and status only.
    [back] = [
        r
        for r in demo.requests
        if r.is_navigation_request() and r.url.startswith(f"{stack.demo_url}?")
    ]
    assert parse_qs(urlsplit(back.url).query) == {"flow_id": [flow_id], "status": ["connected"]}

    # The loginId is in no entry of the tab's history, and not in the address bar.
    cdp = demo.context.new_cdp_session(demo.page)
    history = cdp.send("Page.getNavigationHistory")
    urls = [entry["url"] for entry in history["entries"]]
    assert urls[-1] == stack.demo_url
    assert not [u for u in urls if login_id in u or re.search("loginid", u, re.I)]
    assert not [u for u in urls if "/v1/connect/return/" in u]  # the landing replaced itself
    assert login_id not in demo.page.content()


def test_the_landing_page_without_a_flow_says_so_and_offers_the_way_back(
    demo: Demo, stack: Stack
) -> None:
    demo.page.goto(
        f"{stack.base_url}/v1/connect/return/AAAAAAAAAAAAAAAAAAAAAA"
        "?loginId=8b35f6c8-e7b6-41d3-98f8-08d68b7f8d31&institution=FlinksCapital"
    )
    expect(demo.page.locator("#landing-title")).to_have_text("We could not find this link attempt.")
    # The query left the address bar at once; nothing was sent anywhere.
    assert demo.page.url == f"{stack.base_url}/v1/connect/return/AAAAAAAAAAAAAAAAAAAAAA"
    assert demo.completes() == []
    back = demo.page.get_by_role("link", name="Back to the app")
    expect(back).to_have_attribute("href", stack.demo_url)
    back.click()
    demo.page.wait_for_url(stack.demo_url)
    expect(demo.status).to_have_attribute("data-state", "idle")

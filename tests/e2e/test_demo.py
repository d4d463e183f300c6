"""The demo page (app/web) in Chromium, against the real BFF and the real Flinks sandbox."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Request, Route, expect

from tests.e2e.conftest import (
    ANSWERS,
    PHONE,
    SCREENSHOTS,
    Demo,
    ErrorMode,
    Stack,
)

pytestmark = pytest.mark.e2e

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
RAW_CODE = re.compile(r"\b[A-Z]+(?:_[A-Z]+)+\b")  # INVALID_LOGIN, COMPONENT_LOAD_MFA, ...


def expect_connected(demo: Demo, how: str) -> None:
    expect(demo.status).to_have_attribute("data-state", "connected")
    expect(demo.status).to_contain_text("Your Flinks Capital account is linked.")
    expect(demo.status).to_contain_text(f"Linked with {how}.")
    expect(demo.error).to_be_hidden()


def assert_plain_words(steps: list[str]) -> None:
    """Every step is a sentence: no Flinks step name or FlinksCode shown on its own."""
    assert steps
    for step in steps:
        assert not RAW_CODE.search(step), step
        assert step.endswith((".", "…")), step


def json_body(request: Request) -> dict[str, Any]:
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.post_data or "")
    return body


# -- (a) Flinks Connect --------------------------------------------------------------------------


def test_connect_greatday_answers_one_question_in_the_iframe_only(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    demo.open()
    frame = demo.start_connect()
    expect(demo.status).to_have_attribute("data-state", "waiting")

    demo.sign_in(frame, "Greatday")
    demo.answer_in_iframe(frame)

    # Connect's REDIRECT reached the BFF, whose follow-up /Authorize is the cached one Flinks
    # documents after Connect: the bank is not signed into again, so nothing more is asked.
    expect_connected(demo, "Flinks Connect")
    expect(demo.page.locator("#connect-frame")).to_have_count(0)
    expect(demo.page.locator("#mfa-form")).to_be_hidden()
    assert demo.api_calls("POST", r"/v1/flows/.*/mfa") == []
    steps = demo.steps()
    assert_plain_words(steps)
    for words in (
        "Flinks Connect opened.",
        "Bank chosen: Flinks Capital.",
        "The bank asked a security question (in the Flinks window).",
        "Bank sign-in finished. Finishing the link on our server.",
        "Account linked.",
    ):
        assert words in steps
    assert "The bank asked a security question (on this page)." not in steps

    # The loginId went to our BFF once, as JSON, and nowhere into the page.
    [complete] = demo.completes()
    body = json_body(complete)
    assert set(body) == {"login_id", "institution"}
    assert UUID.fullmatch(body["login_id"])
    assert body["institution"] == "FlinksCapital"
    assert body["login_id"] not in demo.page.content()
    [follow_up] = [c for c in stack.authorize_calls(http) if c["login_id"] == body["login_id"]]
    assert follow_up["most_recent_cached"] is True

    # The README's picture (docs/demo-connected.png): desktop width, down to the status card.
    demo.page.evaluate("window.scrollTo(0, 0)")
    result = demo.page.locator("#result").bounding_box()
    assert result is not None
    height = result["y"] + result["height"] + 12
    demo.screenshot(SCREENSHOTS / "demo-connected.png", clip_height=height)


def test_connect_greatday_nomfa_links_at_once(demo: Demo) -> None:
    demo.open()
    frame = demo.start_connect()
    demo.sign_in(frame, "greatday_nomfa")

    expect_connected(demo, "Flinks Connect")
    assert len(demo.completes()) == 1
    assert demo.api_calls("POST", r"/v1/flows/.*/mfa") == []
    expect(demo.page.locator("#connect-frame")).to_have_count(0)
    assert_plain_words(demo.steps())
    expect(demo.page.get_by_role("button", name="Link another account")).to_be_visible()


@pytest.mark.parametrize("error_mode", ["redirect", "event"])
def test_connect_disabled_account_shows_the_error_in_words(
    demo: Demo, error_mode: ErrorMode
) -> None:
    demo.open()
    frame = demo.start_connect()
    demo.sign_in(frame, "test_disabled_account")

    expect(demo.error).to_be_visible()
    expect(demo.error).to_have_attribute("data-code", "disabled_login")
    expect(demo.error).to_contain_text("The bank has disabled online access for this account.")
    expect(demo.status).not_to_have_attribute("data-state", "connected")
    if error_mode == "event":
        # Connect reported it in the iframe: the BFF never got a loginId.
        expect(frame.locator("#error")).to_be_visible()
        assert demo.completes() == []
    else:
        # Connect issued a loginId; the BFF's live /Authorize was refused.
        expect(demo.status).to_have_attribute("data-state", "failed")
        assert len(demo.completes()) == 1
    assert "The bank has disabled online access for this account." in demo.steps()
    assert_plain_words(demo.steps())


def test_connect_wrong_password_shows_the_error_and_a_retry_links(demo: Demo) -> None:
    demo.open()
    frame = demo.start_connect()
    demo.sign_in(frame, "Greatday", password="Tuesday")

    expect(demo.error).to_have_attribute("data-code", "invalid_login")
    expect(demo.error).to_contain_text("The bank did not accept the username or password.")
    expect(demo.error).to_contain_text("You can try again in the Flinks window.")
    assert demo.completes() == []

    frame.locator("#retry").click()
    expect(demo.error).to_be_hidden()
    frame.locator("#username").fill("greatday_nomfa")
    frame.locator("#password").fill("Everyday")
    frame.locator("#submit-credentials").click()
    expect_connected(demo, "Flinks Connect")
    assert "Trying the bank sign-in again." in demo.steps()


# The page's CSP lets it frame only Flinks Connect, and the BFF's COOP and frame-ancestors keep
# other origins from holding a handle on it; so this test lifts the CSP (bypass_csp) to put a
# frame of a third origin inside the page, the one way left for a foreign message to arrive.
INSERT_FRAME = """(src) => new Promise((loaded) => {
  const frame = document.createElement("iframe");
  frame.id = "intruder";
  frame.src = src;
  frame.addEventListener("load", loaded);
  document.body.append(frame);
})"""
RECORD_MESSAGES = """() => {
  window.__origins = [];
  window.addEventListener("message", (event) => window.__origins.push(event.origin));
}"""


@pytest.mark.parametrize("bypass_csp", [True], ids=["foreign-frame"])
def test_a_message_from_another_origin_is_ignored(
    demo: Demo, stack: Stack, other_origin_url: str
) -> None:
    demo.open()
    demo.page.evaluate(RECORD_MESSAGES)  # sees every message, whatever the app does with it
    frame = demo.start_connect()  # the listener is live and knows connect_origin

    def state() -> tuple[Any, ...]:
        return (
            demo.status.get_attribute("data-state"),
            demo.status.inner_text(),
            demo.error.is_visible(),
            demo.steps(),
            demo.page.locator("#connect-frame").count(),
        )

    before = state()
    demo.page.evaluate(INSERT_FRAME, f"{other_origin_url}/intruder")
    [intruder] = [f for f in demo.page.frames if f.url.startswith(other_origin_url)]
    forged_login_id = str(uuid.uuid4())
    sent = intruder.evaluate("(loginId) => window.fire(loginId)", forged_login_id)
    # The page's own origin is not Connect's either (a script or an extension in the page).
    demo.page.evaluate(
        """(loginId) => window.postMessage(
            {step: "REDIRECT", loginId: loginId, institution: "FlinksCapital"}, "*")""",
        forged_login_id,
    )
    # They were delivered: the test does not pass because nothing arrived.
    demo.page.wait_for_function(
        "([origin, n]) => window.__origins.filter((o) => o !== origin).length >= n",
        arg=[stack.connect_origin, sent + 1],
    )
    demo.page.wait_for_timeout(300)  # time for a fetch to /complete to start, if one would

    assert demo.completes() == []
    assert state() == before
    expect(demo.error).to_be_hidden()

    # The listener was live all along: the real REDIRECT is taken, and only it.
    demo.sign_in(frame, "greatday_nomfa")
    expect_connected(demo, "Flinks Connect")
    [complete] = demo.completes()
    assert json_body(complete)["login_id"] != forged_login_id


# -- (b) OAuth ----------------------------------------------------------------------------------


def _bank_sign_in(demo: Demo, stack: Stack, username: str) -> None:
    link = demo.page.get_by_role("link", name="Link with OAuth")
    href = link.get_attribute("href") or ""
    assert urlsplit(href).path == "/v1/oauth/start"
    assert parse_qs(urlsplit(href).query) == {
        "institution": ["FlinksCapital"],
        "return_url": [stack.demo_url],
        "language": ["en"],
    }
    link.click()
    demo.page.wait_for_url(f"{stack.sandbox.base_url}/oauth/bank/**")
    demo.page.locator("#username").fill(username)
    demo.page.locator("#password").fill("Everyday")


def _returned_flow_id(demo: Demo, stack: Stack) -> str:
    [back] = [
        r
        for r in demo.requests
        if r.is_navigation_request() and r.url.startswith(f"{stack.demo_url}?")
    ]
    query = parse_qs(urlsplit(back.url).query)
    assert set(query) <= {"flow_id", "status", "error"}
    return query["flow_id"][0]


def test_oauth_greatday_nomfa_links_and_cleans_the_address_bar(demo: Demo, stack: Stack) -> None:
    demo.open()
    _bank_sign_in(demo, stack, "greatday_nomfa")
    demo.page.locator("#sign-in").click()

    expect_connected(demo, "OAuth")
    assert demo.page.url == stack.demo_url  # ?flow_id=&status= removed (history.replaceState)
    flow_id = _returned_flow_id(demo, stack)
    # The result shown is the BFF's answer, not the query string.
    assert demo.api_calls("GET", f"/v1/flows/{flow_id}")
    assert "Back from the bank. Asking our server for the result." in demo.steps()
    assert_plain_words(demo.steps())


def _answer_at_the_bank(demo: Demo) -> None:
    prompt = demo.page.locator("#prompt").inner_text()
    demo.page.locator("#answer").fill(ANSWERS[prompt])
    demo.page.locator("#continue").click()


def test_oauth_greatday_answers_mfa_at_the_bank_then_on_the_page(demo: Demo, stack: Stack) -> None:
    demo.open()
    _bank_sign_in(demo, stack, "Greatday")
    demo.page.locator("#sign-in").click()
    _answer_at_the_bank(demo)

    expect(demo.status).to_have_attribute("data-state", "mfa_required")
    assert demo.page.url == stack.demo_url
    prompt = demo.page.locator("#mfa-form label").inner_text()
    demo.page.get_by_label(prompt).fill(ANSWERS[prompt])
    demo.page.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    flow_id = _returned_flow_id(demo, stack)
    [mfa] = demo.api_calls("POST", f"/v1/flows/{flow_id}/mfa")
    assert json_body(mfa) == {"responses": {prompt: [ANSWERS[prompt]]}}


def test_a_wrong_mfa_answer_fails_the_flow_in_words(demo: Demo, stack: Stack) -> None:
    demo.open()
    _bank_sign_in(demo, stack, "Greatday")
    demo.page.locator("#sign-in").click()
    _answer_at_the_bank(demo)

    form = demo.page.locator("#mfa-form")
    expect(form).to_be_visible()
    form.get_by_role("button", name="Send answer").click()  # nothing typed: not sent
    expect(demo.error).to_have_attribute("data-code", "answer_missing")
    assert demo.api_calls("POST", r"/v1/flows/.*/mfa") == []

    form.locator("input").fill("Atlantis")
    form.get_by_role("button", name="Send answer").click()
    expect(demo.status).to_have_attribute("data-state", "failed")
    expect(demo.error).to_have_attribute("data-code", "invalid_security_response")
    expect(demo.error).to_contain_text(
        "The bank did not accept the answer to the security question."
    )
    expect(form).to_be_hidden()
    expect(demo.page.get_by_role("button", name="Start again")).to_be_visible()


def test_oauth_denied_at_the_bank_shows_why(demo: Demo, stack: Stack) -> None:
    demo.open()
    _bank_sign_in(demo, stack, "greatday_nomfa")
    demo.page.get_by_role("button", name="Deny access").click()

    expect(demo.status).to_have_attribute("data-state", "failed")
    expect(demo.error).to_have_attribute("data-code", "oauth_access_denied")
    expect(demo.error).to_contain_text("Access was not granted at the bank")
    assert demo.page.url == stack.demo_url
    assert _returned_flow_id(demo, stack)
    expect(demo.page.get_by_role("button", name="Start again")).to_be_visible()


def test_a_forged_return_address_shows_no_link(demo: Demo, stack: Stack) -> None:
    # Anyone can craft ?status=connected; only the BFF's answer for this browser counts.
    demo.open("?flow_id=AAAAAAAAAAAAAAAAAAAAAA&status=connected")
    expect(demo.error).to_have_attribute("data-code", "flow_not_found")
    expect(demo.error).to_contain_text("We could not find this link attempt.")
    expect(demo.status).to_have_attribute("data-state", "error")
    assert demo.page.url == stack.demo_url
    assert len(demo.api_calls("GET", "/v1/flows/AAAAAAAAAAAAAAAAAAAAAA")) == 1

    # A flow id that cannot be one is not even sent.
    demo.open("?flow_id=%3Cscript%3E&status=connected")
    expect(demo.error).to_have_attribute("data-code", "flow_not_found")
    assert demo.api_calls("GET", r"/v1/flows/.*") == demo.api_calls(
        "GET", "/v1/flows/AAAAAAAAAAAAAAAAAAAAAA"
    )
    assert demo.page.url == stack.demo_url


# -- (d) the BFF's errors and the network -------------------------------------------------------


def _problem(status: int, code: str, title: str) -> dict[str, Any]:
    return {
        "status": status,
        "content_type": "application/problem+json",
        "body": json.dumps(
            {
                "type": f"https://flinks-bff.dev/problems/{code}",
                "title": title,
                "status": status,
                "code": code,
                "request_id": "req-e2e-1",
            }
        ),
    }


def test_bff_problems_and_network_failures_are_told_in_words(demo: Demo) -> None:
    page = demo.page
    start = page.get_by_role("button", name="Link with Flinks Connect")

    page.route(
        "**/v1/connect/sessions",
        lambda route: route.fulfill(**_problem(503, "flinks_unavailable", "Flinks is unavailable")),
    )
    demo.open()
    start.click()
    expect(demo.error).to_have_attribute("data-code", "flinks_unavailable")
    expect(demo.error).to_contain_text("Flinks cannot be reached right now.")
    expect(demo.error).to_contain_text("Reference: req-e2e-1")
    expect(demo.status).to_have_attribute("data-state", "error")
    expect(start).to_be_enabled()

    page.unroute("**/v1/connect/sessions")
    page.route("**/v1/connect/sessions", lambda route: route.abort("connectionrefused"))
    start.click()
    expect(demo.error).to_have_attribute("data-code", "network_error")
    expect(demo.error).to_contain_text("We could not reach the server.")

    page.unroute("**/v1/connect/sessions")
    page.route(
        "**/v1/connect/sessions",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>Bad</h1>"),
    )
    start.click()
    expect(demo.error).to_have_attribute("data-code", "unexpected_response")
    expect(demo.error).to_contain_text("The server sent an answer this page could not read.")

    def expired(route: Route) -> None:
        route.fulfill(**_problem(410, "flow_expired", "The flow has expired"))

    page.route("**/v1/flows/*", expired)
    demo.open("?flow_id=BBBBBBBBBBBBBBBBBBBBBB&status=mfa_required")
    expect(demo.error).to_have_attribute("data-code", "flow_expired")
    expect(demo.error).to_contain_text("This link attempt has expired. Please start again.")
    expect(page.get_by_role("button", name="Start again")).to_be_visible()


# -- layout --------------------------------------------------------------------------------------


def _no_sideways_scroll(demo: Demo) -> None:
    width = demo.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"


@pytest.mark.parametrize("viewport", [PHONE], ids=["375px"])
def test_the_page_works_375_px_wide(demo: Demo) -> None:
    demo.open()
    _no_sideways_scroll(demo)
    start = demo.page.get_by_role("button", name="Link with Flinks Connect")
    box = start.bounding_box()
    assert box is not None
    assert box["height"] >= 44  # a comfortable touch target

    frame = demo.start_connect()
    _no_sideways_scroll(demo)
    iframe = demo.page.locator("#connect-frame").bounding_box()
    assert iframe is not None
    assert iframe["x"] >= 0
    assert iframe["x"] + iframe["width"] <= PHONE["width"]

    demo.sign_in(frame, "greatday_nomfa")
    expect_connected(demo, "Flinks Connect")
    _no_sideways_scroll(demo)

"""The Connect page in headless Chromium, framed by a page on another origin."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import FrameLocator, Page, expect

from tests.sandbox.conftest import clean_settings
from tests.sandbox.e2e.conftest import ConnectHarness
from tests.sandbox.flinks import ANSWERS, PASSWORD, SandboxApi
from tests.sandbox.server import running_sandbox

pytestmark = pytest.mark.e2e

START = ["APP_MOUNTED", "COMPONENT_LOAD_INSTITUTION_SELECTOR", "INSTITUTION_SELECTED"]
CONSENT = ["COMPONENT_LOAD_CONSENT", "COMPONENT_ACCEPT_CONSENT"]


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _sign_in(frame: FrameLocator, username: str, password: str = PASSWORD) -> None:
    frame.locator("#username").fill(username)
    frame.locator("#password").fill(password)
    frame.locator("#submit-credentials").click()


def _pick_institution(frame: FrameLocator, consent: bool = True) -> None:
    frame.locator("#institution-FlinksCapital").click()
    if consent:
        frame.locator("#consent-accept").click()


def _answer_mfa(frame: FrameLocator) -> None:
    prompt = frame.locator("#mfa-prompt-0").inner_text()
    frame.locator("#mfa-answer-0").fill(ANSWERS[prompt])
    frame.locator("#submit-mfa").click()


def test_greatday_with_mfa_redirects_the_top_window(
    harness: ConnectHarness, flinks: SandboxApi, landing_url: str
) -> None:
    frame = harness.open(
        harness.connect_url(demo="true", authorizeToken=harness.token(), redirectUrl=landing_url)
    )
    _pick_institution(frame)
    _sign_in(frame, "Greatday")
    _answer_mfa(frame)

    redirect = harness.event("REDIRECT")
    harness.page.wait_for_url(f"{landing_url}?*")
    assert harness.steps() == [
        *START,
        *CONSENT,
        "COMPONENT_LOAD_CREDENTIAL",
        "SUBMIT_CREDENTIAL",
        "COMPONENT_LOAD_MFA",
        "SUBMIT_MFA",
        "REDIRECT",
    ]
    assert harness.event("COMPONENT_LOAD_MFA")["mfaTypes"] == ["QuestionAndAnswer"]
    assert harness.event("COMPONENT_LOAD_INSTITUTION_SELECTOR")["cached"] is False
    assert harness.event("INSTITUTION_SELECTED")["institution"] == "FlinksCapital"
    assert redirect["institution"] == "FlinksCapital"
    assert redirect["requestId"]
    assert redirect["url"] == harness.page.url
    assert list(_query(harness.page.url)) == ["loginId", "institution"]
    assert _query(harness.page.url)["loginId"] == [redirect["loginId"]]
    assert _query(harness.page.url)["institution"] == ["FlinksCapital"]
    # The BFF's path: a live /Authorize with the LoginId asks the questions again.
    live = flinks.authorize({"LoginId": redirect["loginId"], "MostRecentCached": False})
    assert live.status_code == 203


def test_nomfa_with_inner_redirect_and_tag(
    harness: ConnectHarness, flinks: SandboxApi, landing_url: str
) -> None:
    url = harness.connect_url(
        demo="true",
        authorizeToken=harness.token(),
        redirectUrl=landing_url,
        innerRedirect="true",
        consentEnable="false",
        tag="order-7",
    )
    frame = harness.open(url)
    _pick_institution(frame, consent=False)
    _sign_in(frame, "greatday_nomfa")

    redirect = harness.event("REDIRECT")
    expect(frame.locator("#landed")).to_be_visible()
    assert harness.page.url.startswith(harness.parent_url + "/embed")
    assert harness.steps() == [
        *START,
        "COMPONENT_LOAD_CREDENTIAL",
        "SUBMIT_CREDENTIAL",
        "REDIRECT",
    ]
    assert redirect["tag"] == "order-7"
    assert _query(redirect["url"])["tag"] == ["order-7"]
    assert (
        flinks.authorize({"LoginId": redirect["loginId"], "MostRecentCached": False}).status_code
        == 200
    )


def test_wrong_password_then_retry(harness: ConnectHarness, landing_url: str) -> None:
    url = harness.connect_url(
        demo="true", authorizeToken=harness.token(), redirectUrl=landing_url, jsRedirect="true"
    )
    frame = harness.open(url)
    _pick_institution(frame)
    _sign_in(frame, "greatday_nomfa", "wrong")

    expect(frame.locator("#error")).to_have_attribute("data-code", "INVALID_LOGIN")
    error = harness.event("INVALID_LOGIN")
    frame.locator("#retry").click()
    _sign_in(frame, "greatday_nomfa")
    redirect = harness.event("REDIRECT")

    expect(frame.locator("#success")).to_be_visible()
    assert error["flinksCode"] == "INVALID_LOGIN"
    assert error["institution"] == "FlinksCapital"
    assert harness.steps() == [
        *START,
        *CONSENT,
        "COMPONENT_LOAD_CREDENTIAL",
        "SUBMIT_CREDENTIAL",
        "INVALID_LOGIN",
        "COMPONENT_LOAD_CREDENTIAL_RETRY",
        "SUBMIT_CREDENTIAL",
        "REDIRECT",
    ]
    assert _query(redirect["url"])["loginId"] == [redirect["loginId"]]
    assert harness.page.url.startswith(harness.parent_url + "/embed")  # jsRedirect: no navigation


def test_maximum_retry(harness: ConnectHarness) -> None:
    frame = harness.open(
        harness.connect_url(demo="true", authorizeToken=harness.token(), maximumRetry="2")
    )
    _pick_institution(frame)
    _sign_in(frame, "Greatday", "nope")
    frame.locator("#retry").click()
    _sign_in(frame, "Greatday", "still-nope")

    harness.wait_for("MAXIMUM_RETRY_REACHED")
    expect(frame.locator("#maximum-retry")).to_be_visible()
    assert frame.locator("#retry").count() == 0
    assert harness.steps()[len(START) + len(CONSENT) :] == [
        "COMPONENT_LOAD_CREDENTIAL",
        "SUBMIT_CREDENTIAL",
        "INVALID_LOGIN",
        "COMPONENT_LOAD_CREDENTIAL_RETRY",
        "SUBMIT_CREDENTIAL",
        "INVALID_LOGIN",
        "MAXIMUM_RETRY_REACHED",
    ]


def test_disabled_account_gets_a_login_id_that_fails_live(
    harness: ConnectHarness, flinks: SandboxApi, landing_url: str
) -> None:
    url = harness.connect_url(
        demo="true", authorizeToken=harness.token(), redirectUrl=landing_url, jsRedirect="true"
    )
    frame = harness.open(url)
    _pick_institution(frame)
    _sign_in(frame, "test_disabled_account")

    redirect = harness.event("REDIRECT")
    live = flinks.authorize(
        {"LoginId": redirect["loginId"], "MostRecentCached": False, "Save": True}
    )

    assert live.status_code == 401
    assert live.json()["FlinksCode"] == "DISABLED_LOGIN"


def test_disabled_account_in_event_mode(page: Page, parent_url: str, http: httpx.Client) -> None:
    with running_sandbox(clean_settings(connect_error_users="event")) as sandbox:
        harness = ConnectHarness(page, sandbox, parent_url, http)
        frame = harness.open(harness.connect_url(demo="true", authorizeToken=harness.token()))
        _pick_institution(frame)
        _sign_in(frame, "test_disabled_account")

        event = harness.event("DISABLED_LOGIN")
        expect(frame.locator("#error")).to_have_attribute("data-code", "DISABLED_LOGIN")

    assert event["flinksCode"] == "DISABLED_LOGIN"
    assert "REDIRECT" not in harness.steps()


def test_french_account_selector_with_several_accounts(
    harness: ConnectHarness, landing_url: str
) -> None:
    url = harness.connect_url(
        demo="true",
        authorizeToken=harness.token(),
        redirectUrl=landing_url,
        jsRedirect="true",
        language="fr",
        accountSelectorEnable="true",
        accountSelectorMultiple="true",
        accountSelectorCurrency="cad",
    )
    frame = harness.open(url)
    _pick_institution(frame)
    expect(frame.locator("label[for=password]")).to_have_text("Mot de passe")
    _sign_in(frame, "Greatday")
    expect(frame.locator("#mfa-prompt-0")).to_have_text("Dans quelle ville êtes-vous né?")
    _answer_mfa(frame)

    selection = harness.event("COMPONENT_LOAD_ACCOUNT_SELECTION")
    boxes = frame.locator("#accounts-form input[type=checkbox]")
    expect(boxes).to_have_count(4)
    boxes.nth(0).check()
    boxes.nth(1).check()
    chosen = [boxes.nth(0).get_attribute("value"), boxes.nth(1).get_attribute("value")]
    frame.locator("#submit-accounts").click()
    redirect = harness.event("REDIRECT")

    assert (selection["totalAccounts"], selection["displayedAccounts"]) == (5, 4)
    assert harness.event("ACCOUNT_SELECTED")["accountId"] == ",".join(map(str, chosen))
    assert redirect["accountId"] == ",".join(map(str, chosen))
    assert _query(redirect["url"])["accountId"] == [",".join(map(str, chosen))]
    assert harness.steps()[-4:] == [
        "SUBMIT_MFA",
        "COMPONENT_LOAD_ACCOUNT_SELECTION",
        "ACCOUNT_SELECTED",
        "REDIRECT",
    ]


def test_a_reload_with_a_used_token_fails_clearly(harness: ConnectHarness) -> None:
    url = harness.connect_url(demo="true", authorizeToken=harness.token(), jsRedirect="true")
    frame = harness.open(url)
    _pick_institution(frame)
    _sign_in(frame, "greatday_nomfa")
    harness.wait_for("REDIRECT")

    harness.events.clear()
    frame = harness.open(url)

    expect(frame.locator("#fatal")).to_contain_text("already used")
    harness.wait_for("ACCESS_DENIED")
    assert harness.steps() == ["APP_MOUNTED", "ACCESS_DENIED"]


def test_a_missing_token_is_refused(harness: ConnectHarness) -> None:
    frame = harness.open(harness.connect_url(demo="true"))

    expect(frame.locator("#fatal")).to_contain_text("authorizeToken")


def test_consent_can_be_denied(harness: ConnectHarness) -> None:
    frame = harness.open(harness.connect_url(demo="true", authorizeToken=harness.token()))
    frame.locator("#institution-FlinksCapital").click()
    frame.locator("#consent-deny").click()

    expect(frame.locator("#denied")).to_be_visible()
    harness.wait_for("COMPONENT_DENY_CONSENT")
    assert harness.steps()[-2:] == ["COMPONENT_LOAD_CONSENT", "COMPONENT_DENY_CONSENT"]


def test_without_demo_there_is_no_institution(harness: ConnectHarness) -> None:
    frame = harness.open(harness.connect_url(authorizeToken=harness.token()))

    expect(frame.locator("#no-institutions")).to_be_visible()
    assert frame.locator("#institution-FlinksCapital").count() == 0


def test_stringify_sends_json_strings(harness: ConnectHarness) -> None:
    harness.open(harness.connect_url(demo="true", authorizeToken=harness.token(), stringify="true"))

    harness.wait_until(lambda: len(harness.events) >= 2, 10, "no events")
    assert all(isinstance(e, str) for e in harness.events)
    assert json.loads(harness.events[0]) == {"step": "APP_MOUNTED"}


def test_a_javascript_redirect_url_is_never_followed(harness: ConnectHarness) -> None:
    url = harness.connect_url(
        demo="true", authorizeToken=harness.token(), redirectUrl="javascript:alert(1)"
    )
    frame = harness.open(url)
    _pick_institution(frame)
    _sign_in(frame, "greatday_nomfa")

    redirect = harness.event("REDIRECT")
    expect(frame.locator("#success")).to_be_visible()
    assert "url" not in redirect

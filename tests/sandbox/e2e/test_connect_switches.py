"""The Connect page in Chromium: both REDIRECT shapes, jsRedirect ignored, every MFA type."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import FrameLocator, expect

from tests.sandbox.e2e.conftest import ConnectHarness
from tests.sandbox.flinks import PASSWORD
from tests.sandbox.mfa import CHOICE_ANSWERS, PHONE, SECURITY_CODE, is_triangle

pytestmark = pytest.mark.e2e


def _switch(harness: ConnectHarness, **values: Any) -> None:
    url = f"{harness.sandbox.base_url}/__sandbox/switches"
    assert harness.http.patch(url, json=values).status_code == 200


def _sign_in(frame: FrameLocator, username: str) -> None:
    frame.locator("#institution-FlinksCapital").click()
    frame.locator("#consent-accept").click()
    frame.locator("#username").fill(username)
    frame.locator("#password").fill(PASSWORD)
    frame.locator("#submit-credentials").click()


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.mark.parametrize(
    ("shape", "keys"),
    [
        ("url_only", {"step", "institution", "url"}),
        ("top_level", {"step", "institution", "loginId", "requestId"}),
        ("both", {"step", "institution", "loginId", "requestId", "url"}),
    ],
)
def test_each_redirect_message_shape_as_the_parent_page_receives_it(
    harness: ConnectHarness, landing_url: str, shape: str, keys: set[str]
) -> None:
    _switch(harness, redirect_message=shape)
    url = harness.connect_url(
        demo="true", authorizeToken=harness.token(), redirectUrl=landing_url, jsRedirect="true"
    )
    _sign_in(harness.open(url), "greatday_nomfa")

    redirect = harness.event("REDIRECT")
    login = harness.http.get(f"{harness.sandbox.base_url}/__sandbox/logins").json()[0]

    assert set(redirect) == keys
    assert redirect["institution"] == "FlinksCapital"
    if "url" in keys:
        assert redirect["url"].startswith(landing_url + "?")
        assert _query(redirect["url"])["loginId"] == [login["login_id"]]
    if "loginId" in keys:
        assert redirect["loginId"] == login["login_id"]


def test_url_only_without_a_redirect_url_still_carries_the_login_id(
    harness: ConnectHarness,
) -> None:
    _switch(harness, redirect_message="url_only")
    _sign_in(
        harness.open(harness.connect_url(demo="true", authorizeToken=harness.token())),
        "greatday_nomfa",
    )

    redirect = harness.event("REDIRECT")

    assert set(redirect) == {"step", "institution", "url"}
    assert _query(redirect["url"])["institution"] == ["FlinksCapital"]
    assert len(_query(redirect["url"])["loginId"][0]) == 36


def test_js_redirect_ignored_navigates_the_top_window_with_the_login_id(
    harness: ConnectHarness, landing_url: str
) -> None:
    _switch(harness, js_redirect="ignore")
    url = harness.connect_url(
        demo="true", authorizeToken=harness.token(), redirectUrl=landing_url, jsRedirect="true"
    )
    _sign_in(harness.open(url), "greatday_nomfa")

    redirect = harness.event("REDIRECT")
    harness.page.wait_for_url(f"{landing_url}?*")

    assert list(_query(harness.page.url)) == ["loginId", "institution"]
    assert _query(harness.page.url)["loginId"] == [redirect["loginId"]]
    assert _query(harness.page.url)["institution"] == ["FlinksCapital"]


def _choose(frame: FrameLocator, index: int, value: str) -> None:
    frame.locator(f'input[name="mfa-answer-{index}"][value="{value}"]').check()


def _answer_in_page(frame: FrameLocator, kind: str) -> None:
    """Answer the challenge the page shows the way a person would, for each type."""
    prompt = frame.locator("#mfa-prompt-0").inner_text()
    if kind == "TextOrCall":
        frame.locator(f'input[name="mfa-phone-0"][value="{PHONE}"]').check()
        frame.locator('input[name="mfa-method-0"][value="Text"]').check()
        frame.locator("#submit-mfa").click()
        expect(frame.locator("#mfa-prompt-0")).to_contain_text("Enter the security code")
        frame.locator("#mfa-answer-0").fill(SECURITY_CODE)
    elif kind == "ImageSelection":
        images = frame.locator('input[name="mfa-answer-0"]')
        expect(frame.locator("#mfa-form img")).to_have_count(4)
        values = [images.nth(i).get_attribute("value") or "" for i in range(images.count())]
        _choose(frame, 0, next(v for v in values if is_triangle(v)))
    else:
        for value in CHOICE_ANSWERS[prompt]:
            _choose(frame, 0, value)
    frame.locator("#submit-mfa").click()


@pytest.mark.parametrize(
    ("username", "kind", "control"),
    [
        ("test_mfa_question_choices", "QuestionAndAnswer", "radio"),
        ("test_mfa_multiple_choice", "MultipleChoice", "radio"),
        ("test_mfa_multiple_answers", "MultipleChoiceMultipleAnswers", "checkbox"),
        ("test_mfa_image", "ImageSelection", "radio"),
        ("test_mfa_text_or_call", "TextOrCall", "radio"),
    ],
)
def test_every_mfa_type_is_shown_and_answered_in_the_page(
    harness: ConnectHarness, username: str, kind: str, control: str
) -> None:
    url = harness.connect_url(demo="true", authorizeToken=harness.token(), jsRedirect="true")
    frame = harness.open(url)
    _sign_in(frame, username)

    expect(frame.locator(f"#mfa-form input[type={control}]").first).to_be_visible()
    _answer_in_page(frame, kind)
    harness.wait_for("REDIRECT")

    assert harness.event("COMPONENT_LOAD_MFA")["mfaTypes"] == [kind]
    expect(frame.locator("#success")).to_be_visible()


def test_a_wrong_answer_brings_a_new_question_with_new_challenge(harness: ConnectHarness) -> None:
    _switch(harness, wrong_answer="new_challenge")
    url = harness.connect_url(demo="true", authorizeToken=harness.token(), jsRedirect="true")
    frame = harness.open(url)
    _sign_in(frame, "Greatday")
    frame.locator("#mfa-answer-0").fill("Paris")
    frame.locator("#submit-mfa").click()

    expect(frame.locator("#mfa-error")).to_have_attribute("data-code", "INVALID_SECURITY_RESPONSE")
    expect(frame.locator("#mfa-prompt-0")).to_have_text("What is the best country on earth?")
    frame.locator("#mfa-answer-0").fill("Canada")
    frame.locator("#submit-mfa").click()
    harness.wait_for("REDIRECT")

    assert harness.steps()[-5:] == [
        "COMPONENT_LOAD_MFA",
        "SUBMIT_MFA",
        "COMPONENT_LOAD_MFA_RETRY",
        "SUBMIT_MFA",
        "REDIRECT",
    ]


def test_an_unanswered_choice_is_not_sent(harness: ConnectHarness) -> None:
    frame = harness.open(harness.connect_url(demo="true", authorizeToken=harness.token()))
    _sign_in(frame, "test_mfa_multiple_choice")
    frame.locator("#submit-mfa").click()

    expect(frame.locator("#mfa-incomplete")).to_be_visible()
    assert "SUBMIT_MFA" not in harness.steps()

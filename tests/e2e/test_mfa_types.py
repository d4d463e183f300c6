"""Every kind of Flinks security question on the demo page, in Chromium.

A question reaches the page when the BFF's own (live) /Authorize asks it: after OAuth, the BFF
signs in at the bank again and the sandbox's user asks its first question again. The bank's
page itself is passed with the sandbox's control API (`/__sandbox/oauth/complete`): what is
tested here is the demo page. Users and answers: app/sandbox/README.md."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, expect

from app.sandbox import images
from tests.e2e.conftest import ANSWERS, PASSWORD, Demo, Stack
from tests.e2e.test_demo import expect_connected, json_body

pytestmark = pytest.mark.e2e

PHONE = "•••-•••-4242"
CODE_PROMPT = f"Enter the security code sent by text message to {PHONE}"
# What the bank's page is answered with, for every user (extra keys are ignored).
AT_THE_BANK: dict[str, list[str]] = {
    **{prompt: [answer] for prompt, answer in ANSWERS.items()},
    "Which bank did you open your first account with?": ["Flinks Capital"],
    "Which of these cities have you lived in?": ["Montreal", "Quebec City"],
    "Select your personal image": [images.TRIANGLE],
    PHONE: ["Text"],
    CODE_PROMPT: ["123456"],
}


def mfa_on_the_page(demo: Demo, stack: Stack, http: httpx.Client, username: str) -> Locator:
    """Link with OAuth as `username`, answer at the bank, and wait for the page's question."""
    demo.open()
    demo.page.get_by_role("link", name="Link with OAuth").click()
    demo.page.wait_for_url(f"{stack.sandbox.base_url}/oauth/bank/**")
    done = http.post(
        f"{stack.sandbox.base_url}/__sandbox/oauth/complete",
        json={
            "session": demo.page.url,
            "username": username,
            "password": PASSWORD,
            "answers": AT_THE_BANK,
        },
    )
    assert done.status_code == 200, done.text
    demo.page.goto(done.json()["location"])
    form = demo.page.locator("#mfa-form")
    expect(form).to_be_visible()
    expect(demo.status).to_have_attribute("data-state", "mfa_required")
    return form


def sent_answers(demo: Demo) -> list[dict[str, Any]]:
    return [json_body(r)["responses"] for r in demo.api_calls("POST", r"/v1/flows/.*/mfa")]


def test_multiple_choice_shows_the_choices_and_links(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    form = mfa_on_the_page(demo, stack, http, "test_mfa_multiple_choice")

    prompt = "Which bank did you open your first account with?"
    group = form.get_by_role("group", name=prompt)
    radios = group.get_by_role("radio")
    expect(radios).to_have_count(4)
    assert [radios.nth(i).get_attribute("value") for i in range(4)] == [
        "Maple Trust",
        "Flinks Capital",
        "Northern Savings",
        "Harbour Credit",
    ]
    expect(form.locator("input[type=text]")).to_have_count(0)
    form.get_by_role("button", name="Send answer").click()  # nothing chosen: not sent
    expect(demo.error).to_have_attribute("data-code", "answer_missing")
    assert sent_answers(demo) == []

    group.get_by_label("Flinks Capital").check()
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    assert sent_answers(demo) == [{prompt: ["Flinks Capital"]}]


def test_question_with_choices_is_radio_buttons(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    form = mfa_on_the_page(demo, stack, http, "test_mfa_question_choices")

    prompt = "What city were you born in?"
    group = form.get_by_role("group", name=prompt)
    expect(group.get_by_role("radio")).to_have_count(4)
    group.get_by_label("Montreal").check()
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    assert sent_answers(demo) == [{prompt: ["Montreal"]}]


def test_multiple_answers_are_checkboxes(demo: Demo, stack: Stack, http: httpx.Client) -> None:
    form = mfa_on_the_page(demo, stack, http, "test_mfa_multiple_answers")

    prompt = "Which of these cities have you lived in?"
    group = form.get_by_role("group", name=prompt)
    expect(group.get_by_role("checkbox")).to_have_count(5)
    group.get_by_label("Montreal").check()
    group.get_by_label("Quebec City").check()
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    assert sent_answers(demo) == [{prompt: ["Montreal", "Quebec City"]}]


def test_image_selection_is_a_grid_of_pictures(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    form = mfa_on_the_page(demo, stack, http, "test_mfa_image")

    prompt = "Select your personal image"
    group = form.get_by_role("group", name=prompt)
    pictures = group.get_by_role("img")
    expect(pictures).to_have_count(4)
    for i in range(4):
        assert (pictures.nth(i).get_attribute("src") or "").startswith("data:image/png;base64,")
        # The pictures are drawn (a blocked or broken data: URL has no natural width).
        assert pictures.nth(i).evaluate("(img) => img.complete && img.naturalWidth > 0")
    triangle = group.get_by_role("radio", name="Picture 3 of 4")
    choice = triangle.get_attribute("value")
    triangle.check()
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    # The answer is the choice itself: the base64 PNG Flinks offered.
    assert sent_answers(demo) == [{prompt: [choice]}]


def test_text_or_call_asks_number_and_way_then_the_code(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    form = mfa_on_the_page(demo, stack, http, "test_mfa_text_or_call")

    prompt = "How would you like to receive your one-time security code?"
    group = form.get_by_role("group", name=prompt)
    numbers = group.get_by_role("group", name="Phone number").get_by_role("radio")
    expect(numbers).to_have_count(2)
    group.get_by_label(PHONE).check()
    form.get_by_role("button", name="Send answer").click()  # Text or Call not chosen yet
    expect(demo.error).to_have_attribute("data-code", "answer_missing")
    group.get_by_role("group", name="Send the code by").get_by_label("Text").check()
    form.get_by_role("button", name="Send answer").click()

    # Then the code that was sent: a plain question.
    expect(form.get_by_label(CODE_PROMPT)).to_be_visible()
    expect(demo.page.locator("#mfa-retry")).to_be_hidden()
    form.get_by_label(CODE_PROMPT).fill("123456")
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    assert sent_answers(demo) == [{prompt: [PHONE, "Text"]}, {CODE_PROMPT: ["123456"]}]


def test_a_wrong_answer_followed_by_a_new_question_can_be_answered_again(
    demo: Demo, stack: Stack, http: httpx.Client
) -> None:
    # Flinks' pages disagree; this is the reading where the bank asks again (a 401 with new
    # challenges): the flow stays mfa_required, with the attempt count.
    stack.switches(http, wrong_answer="new_challenge")
    form = mfa_on_the_page(demo, stack, http, "Greatday")
    retry = demo.page.locator("#mfa-retry")
    expect(retry).to_be_hidden()

    form.locator("input").fill("Atlantis")
    form.get_by_role("button", name="Send answer").click()

    expect(retry).to_be_visible()
    expect(retry).to_have_text("That answer was not accepted; try again.")
    expect(demo.status).to_have_attribute("data-state", "mfa_required")
    prompt = form.locator("label").inner_text()
    assert prompt in ANSWERS
    form.get_by_label(prompt).fill(ANSWERS[prompt])
    form.get_by_role("button", name="Send answer").click()

    expect_connected(demo, "OAuth")
    expect(retry).to_be_hidden()

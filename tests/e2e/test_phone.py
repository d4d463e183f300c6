"""The demo on a phone (390x844): the main flows, checked as layout facts, not pixels.

Each test keeps what the phone shows at its key moments as build/e2e/phone-*.png (the viewport
only, as a person sees it), besides the full page the conftest saves at the end.

Layout facts checked:
- the Connect iframe is wholly in view once it opens, and its top does not move while the person
  chooses, consents and types, nor when the status text or an error changes;
- no page (the demo, the sandbox's Connect page in the iframe, the sandbox's bank page) scrolls
  sideways, and their inputs are usable by touch (44 px tall, text of 16 px or more: smaller
  text makes iOS zoom in when the field is focused, which moves the page);
- the status follows Connect's steps: while the bank asks its question it says so, not
  "Choose your bank";
- after coming back from the bank, the result is in view;
- a failure is told in one red box."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.e2e.conftest import ANSWERS, PASSWORD, SCREENSHOTS, Demo, Stack

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect
from tests.e2e.test_demo import expect_connected

PHONE_390 = {"width": 390, "height": 844}
KEYBOARD_UP_HEIGHT = 844 - 336  # what is left of the screen under an iPhone's keyboard

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("viewport", [PHONE_390], ids=["390x844"]),
]

# A box drawn in the error tint (red over green and blue); the outermost ones only, so a box
# inside a box counts once. Buttons are not boxes.
RED_BOXES = """() => {
  const tinted = (node) => {
    const rgba = (getComputedStyle(node).backgroundColor.match(/[\\d.]+/g) || []).map(Number);
    const [r, g, b, a = 1] = rgba;
    return rgba.length >= 3 && a > 0 && r - g > 12 && r - b > 12;
  };
  const shown = (node) => {
    const box = node.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(node).visibility !== "hidden";
  };
  const boxes = [...document.body.querySelectorAll("*")].filter(
    (node) => node.tagName !== "BUTTON" && shown(node) && tinted(node));
  return boxes
    .filter((node) => !boxes.some((other) => other !== node && other.contains(node)))
    .map((node) => node.innerText);
}"""

VISIBLE_ALERTS = """() => [...document.querySelectorAll('[role="alert"]')]
  .filter((node) => node.getBoundingClientRect().height > 0).length"""

# Text inputs and buttons a thumb has to hit: [name, height, font size in px].
CONTROLS = """() => [...document.querySelectorAll(
    'input:not([type=radio]):not([type=checkbox]):not([type=hidden]), button')]
  .filter((node) => node.getBoundingClientRect().height > 0)
  .map((node) => [node.id || node.name || node.textContent,
                  node.getBoundingClientRect().height,
                  parseFloat(getComputedStyle(node).fontSize)])"""


def snap(demo: Demo, name: str) -> None:
    """What the phone's screen shows now."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    demo.page.screenshot(path=str(SCREENSHOTS / f"phone-{name}.png"))


def assert_fits(target: Page | Frame) -> None:
    """No sideways scroll, and every text input and button is usable by touch."""
    width, inner = target.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{target.url}: {width} px wide in a {inner} px window"
    controls: list[list[Any]] = target.evaluate(CONTROLS)
    assert controls
    for name, height, font_size in controls:
        assert height >= 44, f"{name!r} is {height} px tall"
        assert font_size >= 16, f"{name!r} has {font_size} px text"


def connect_frame(demo: Demo) -> Frame:
    handle = demo.page.locator("#connect-frame").element_handle()
    frame = handle.content_frame() if handle else None
    assert frame is not None
    return frame


class IframeWatch:
    """The Connect iframe's top on the screen, taken once and then held to."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        box = self._box()
        inner_height = demo.page.evaluate("window.innerHeight")
        # Wholly in view: the person sees the whole Flinks window without scrolling.
        assert box["y"] >= 0, box
        assert box["y"] + box["height"] <= inner_height, (box, inner_height)
        self.top = box["y"]

    def _box(self) -> FloatRect:
        box = self.demo.page.locator("#connect-frame").bounding_box()
        assert box is not None
        return box

    def still(self, when: str) -> None:
        assert self._box()["y"] == self.top, f"the iframe moved {when}"


def status_words(demo: Demo) -> str:
    return demo.status.inner_text()


def assert_result_in_view(demo: Demo) -> None:
    """The result card starts in view and its message box is wholly in view (the list of steps
    under it may go on below)."""
    inner_height = demo.page.evaluate("window.innerHeight")
    result = demo.page.locator("#result").bounding_box()
    message = demo.page.locator("#message").bounding_box()
    assert result is not None
    assert message is not None
    assert 0 <= result["y"] < inner_height, result
    assert message["y"] + message["height"] <= inner_height, (message, inner_height)


def assert_one_error_box(demo: Demo, *words: str) -> None:
    boxes: list[str] = demo.page.evaluate(RED_BOXES)
    assert len(boxes) == 1, boxes
    for text in words:
        assert text in boxes[0], boxes
    assert demo.page.evaluate(VISIBLE_ALERTS) == 1


def choose_bank_and_consent(demo: Demo, watch: IframeWatch) -> Frame:
    frame = connect_frame(demo)
    expect(demo.status).to_contain_text("Choose your bank")
    frame.locator("#institution-FlinksCapital").tap()
    frame.locator("#consent-accept").wait_for()
    expect(demo.status).not_to_contain_text("Choose your bank")
    watch.still("when the bank was chosen")
    assert_fits(frame)
    frame.locator("#consent-accept").tap()
    frame.locator("#username").wait_for()
    expect(demo.status).to_contain_text("Sign in to Flinks Capital")
    watch.still("when the sign-in form showed")
    return frame


def type_credentials(demo: Demo, watch: IframeWatch, frame: Frame, username: str) -> None:
    frame.locator("#username").tap()
    frame.locator("#username").press_sequentially(username)
    watch.still("while the username was typed")
    frame.locator("#password").tap()
    frame.locator("#password").press_sequentially(PASSWORD)
    watch.still("while the password was typed")


def keyboard_up(demo: Demo, watch: IframeWatch, frame: Frame) -> None:
    """As a browser that shrinks the page for the on-screen keyboard would (the demo asks for
    the other behaviour, interactive-widget=resizes-visual): the iframe stays where it was, and
    the field being typed into stays above the keyboard."""
    demo.page.set_viewport_size({"width": PHONE_390["width"], "height": KEYBOARD_UP_HEIGHT})
    try:
        watch.still("when the keyboard came up")
        field = frame.locator("#password").bounding_box()
        assert field is not None
        assert field["y"] + field["height"] <= KEYBOARD_UP_HEIGHT, field
    finally:
        demo.page.set_viewport_size({"width": PHONE_390["width"], "height": PHONE_390["height"]})


# -- Flinks Connect ------------------------------------------------------------------------------


def test_phone_connect_greatday_nomfa(demo: Demo) -> None:
    demo.open()
    assert_fits(demo.page)
    snap(demo, "start")
    demo.start_connect()
    watch = IframeWatch(demo)
    snap(demo, "connect-open")

    frame = choose_bank_and_consent(demo, watch)
    assert_fits(frame)
    type_credentials(demo, watch, frame, "greatday_nomfa")
    snap(demo, "connect-signing-in")
    keyboard_up(demo, watch, frame)
    frame.locator("#submit-credentials").tap()

    expect_connected(demo, "Flinks Connect")
    assert_result_in_view(demo)
    assert_fits(demo.page)
    snap(demo, "connect-linked")


def test_phone_connect_greatday_answers_mfa_in_the_iframe(demo: Demo) -> None:
    demo.open()
    demo.start_connect()
    watch = IframeWatch(demo)
    frame = choose_bank_and_consent(demo, watch)
    type_credentials(demo, watch, frame, "Greatday")
    frame.locator("#submit-credentials").tap()

    prompt = frame.locator("#mfa-prompt-0")
    prompt.wait_for()
    # The status says what the iframe shows: the bank's question, not the bank choice.
    expect(demo.status).to_contain_text("security question")
    expect(demo.status).not_to_contain_text("Choose your bank")
    watch.still("when the security question showed")
    assert_fits(frame)
    answer = frame.locator("#mfa-answer-0")
    answer.tap()
    answer.press_sequentially(ANSWERS[prompt.inner_text()])
    watch.still("while the answer was typed")
    snap(demo, "connect-mfa")
    frame.locator("#submit-mfa").tap()

    expect_connected(demo, "Flinks Connect")
    assert_result_in_view(demo)


def test_phone_connect_failures_show_one_box(demo: Demo) -> None:
    demo.open()
    demo.start_connect()
    watch = IframeWatch(demo)
    frame = choose_bank_and_consent(demo, watch)
    type_credentials(demo, watch, frame, "nobody_at_all")
    frame.locator("#submit-credentials").tap()

    # Refused inside Connect, which offers to try again: the page says so once, below the iframe.
    expect(demo.error).to_have_attribute("data-code", "invalid_login")
    watch.still("when the error showed")
    assert_one_error_box(demo, "The bank did not accept the username or password.")
    snap(demo, "connect-wrong-password")

    frame.locator("#retry").tap()
    expect(demo.error).to_be_hidden()
    watch.still("when the error went away")
    type_credentials(demo, watch, frame, "test_disabled_account")
    frame.locator("#submit-credentials").tap()

    # Connect gave a loginId; the BFF's own /Authorize was refused: the flow failed.
    expect(demo.status).to_have_attribute("data-state", "failed")
    expect(demo.error).to_have_attribute("data-code", "disabled_login")
    assert_one_error_box(demo, "Not linked.", "The bank has disabled online access")
    assert_result_in_view(demo)
    assert_fits(demo.page)
    snap(demo, "connect-failed")


# -- OAuth ---------------------------------------------------------------------------------------


def go_to_the_bank(demo: Demo, stack: Stack) -> None:
    demo.page.get_by_role("link", name="Link with OAuth").tap()
    demo.page.wait_for_url(f"{stack.sandbox.base_url}/oauth/bank/**")
    assert_fits(demo.page)


def sign_in_at_the_bank(demo: Demo, username: str) -> None:
    page = demo.page
    page.locator("#username").tap()
    page.locator("#username").press_sequentially(username)
    page.locator("#password").tap()
    page.locator("#password").press_sequentially(PASSWORD)
    page.locator("#sign-in").tap()


def test_phone_oauth_greatday_nomfa(demo: Demo, stack: Stack) -> None:
    demo.open()
    go_to_the_bank(demo, stack)
    snap(demo, "oauth-bank-sign-in")
    sign_in_at_the_bank(demo, "greatday_nomfa")

    expect_connected(demo, "OAuth")
    # Back on the demo, scrolled to the result (it sits below the two ways to link).
    assert_result_in_view(demo)
    assert demo.page.evaluate("window.scrollY") > 0
    assert_fits(demo.page)
    snap(demo, "oauth-linked")


def test_phone_oauth_greatday_answers_at_the_bank_then_on_the_page(
    demo: Demo, stack: Stack
) -> None:
    demo.open()
    go_to_the_bank(demo, stack)
    sign_in_at_the_bank(demo, "Greatday")

    prompt = demo.page.locator("#prompt").inner_text()
    assert_fits(demo.page)
    snap(demo, "oauth-bank-question")
    demo.page.locator("#answer").tap()
    demo.page.locator("#answer").press_sequentially(ANSWERS[prompt])
    demo.page.locator("#continue").tap()

    # The BFF's own sign-in asks again: the question is on the page, in view.
    expect(demo.status).to_have_attribute("data-state", "mfa_required")
    label = demo.page.locator("#mfa-form label")
    assert_result_in_view(demo)
    snap(demo, "oauth-question-on-the-page")
    question = label.inner_text()
    demo.page.get_by_label(question).fill(ANSWERS[question])
    demo.page.get_by_role("button", name="Send answer").tap()

    expect_connected(demo, "OAuth")
    assert_result_in_view(demo)

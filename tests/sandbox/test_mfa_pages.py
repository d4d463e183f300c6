"""Every MFA type through the Connect page's API, the OAuth bank page and the control shortcuts."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.sandbox.flinks import PASSWORD, SandboxApi
from tests.sandbox.mfa import CHOICE_ANSWERS, PHONE, SECURITY_CODE, is_triangle

CALLBACK = "http://127.0.0.1:8000/v1/oauth/callback"
TYPES = {
    "test_mfa_question_choices": "QuestionAndAnswer",
    "test_mfa_multiple_choice": "MultipleChoice",
    "test_mfa_multiple_answers": "MultipleChoiceMultipleAnswers",
    "test_mfa_image": "ImageSelection",
    "test_mfa_text_or_call": "TextOrCall",
}


def _page_api(flinks: SandboxApi, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = flinks.http.post(f"{flinks.sandbox.base_url}/v2/api/{path}", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _page_responses(challenge: dict[str, Any]) -> dict[str, list[str]]:
    """What the Connect page sends for one of its challenges (lower-case keys)."""
    kind, prompt, choices = challenge["type"], challenge["prompt"], challenge["choices"]
    if kind == "TextOrCall":
        return {PHONE: ["Text"]}
    if kind == "ImageSelection":
        return {prompt: [next(c for c in choices if is_triangle(c))]}
    if prompt.startswith("Enter the security code"):
        return {prompt: [SECURITY_CODE]}
    return {prompt: CHOICE_ANSWERS[prompt]}


@pytest.mark.parametrize("username", list(TYPES))
def test_the_connect_page_gets_each_type_with_its_choices(
    flinks: SandboxApi, username: str
) -> None:
    reply = _page_api(
        flinks,
        "credentials",
        {"authorizeToken": flinks.token(), "username": username, "password": PASSWORD},
    )
    [challenge] = reply["challenges"]
    kinds = [reply["mfaTypes"]]
    while reply["outcome"] == "mfa":
        reply = _page_api(
            flinks,
            "mfa",
            {"session": reply["session"], "responses": _page_responses(reply["challenges"][0])},
        )
        kinds.append(reply.get("mfaTypes"))

    assert kinds[0] == [TYPES[username]]
    assert challenge["type"] == TYPES[username]
    assert len(challenge["choices"]) >= 2
    assert reply["outcome"] == "connected", reply
    assert (
        flinks.authorize({"LoginId": reply["loginId"], "MostRecentCached": True}).json()["Login"][
            "Username"
        ]
        == username
    )


def test_the_connect_page_asks_a_new_question_after_a_wrong_answer(flinks: SandboxApi) -> None:
    flinks.control("PATCH", "switches", {"wrong_answer": "new_challenge"})
    mfa = _page_api(
        flinks,
        "credentials",
        {"authorizeToken": flinks.token(), "username": "Greatday", "password": PASSWORD},
    )

    again = _page_api(
        flinks,
        "mfa",
        {"session": mfa["session"], "responses": {mfa["challenges"][0]["prompt"]: ["Paris"]}},
    )
    done = _page_api(
        flinks,
        "mfa",
        {"session": mfa["session"], "responses": {again["challenges"][0]["prompt"]: ["Canada"]}},
    )

    assert again["outcome"] == "mfa"
    assert again["error"] == "INVALID_SECURITY_RESPONSE"
    assert again["challenges"][0]["prompt"] == "What is the best country on earth?"
    assert done["outcome"] == "connected"


def _bank_page(flinks: SandboxApi) -> str:
    response = flinks.http.get(
        f"{flinks.sandbox.base_url}/v3/oauth/authorize",
        params={"institution_id": "FlinksCapital", "redirect_uri": CALLBACK, "state": "s-1"},
    )
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


def _post(flinks: SandboxApi, page: str, form: list[tuple[str, str]]) -> httpx.Response:
    """A form post; a field may repeat (several checkboxes)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return flinks.http.post(page, content=urlencode(form), headers=headers)


def _sign_in(flinks: SandboxApi, username: str) -> tuple[str, httpx.Response]:
    page = _bank_page(flinks)
    form = [("username", username), ("password", PASSWORD), ("action", "login")]
    return page, _post(flinks, page, form)


def _values(html: str, name: str) -> list[str]:
    return re.findall(rf'name="{name}" value="([^"]*)"', html)


def test_the_bank_page_offers_checkboxes_for_several_answers(flinks: SandboxApi) -> None:
    page, mfa = _sign_in(flinks, "test_mfa_multiple_answers")

    choices = _values(mfa.text, "choice")
    done = _post(
        flinks, page, [("choice", "Montreal"), ("choice", "Quebec City"), ("action", "answer")]
    )

    assert 'type="checkbox"' in mfa.text
    assert choices == ["Montreal", "Toronto", "Quebec City", "Paris", "Tokyo"]
    assert done.status_code == 302
    assert parse_qs(urlsplit(done.headers["location"]).query)["state"] == ["s-1"]


def test_the_bank_page_asks_again_after_a_wrong_choice(flinks: SandboxApi) -> None:
    page, mfa = _sign_in(flinks, "test_mfa_multiple_choice")

    wrong = _post(flinks, page, [("choice", "Maple Trust"), ("action", "answer")])
    done = _post(flinks, page, [("choice", "Flinks Capital"), ("action", "answer")])

    assert 'type="radio"' in mfa.text
    assert wrong.status_code == 200
    assert 'id="error"' in wrong.text
    assert done.status_code == 302


def test_the_bank_page_shows_the_images(flinks: SandboxApi) -> None:
    page, mfa = _sign_in(flinks, "test_mfa_image")

    images = _values(mfa.text, "choice")
    triangle = next(image for image in images if is_triangle(image))
    done = _post(flinks, page, [("choice", triangle), ("action", "answer")])

    assert len(images) == 4
    assert mfa.text.count('src="data:image/png;base64,') == 4
    assert "img-src data:" in mfa.headers["content-security-policy"]
    assert done.status_code == 302


def test_the_bank_page_text_or_call_then_the_code(flinks: SandboxApi) -> None:
    page, mfa = _sign_in(flinks, "test_mfa_text_or_call")

    code = _post(flinks, page, [("phone", PHONE), ("method", "Call"), ("action", "answer")])
    done = _post(flinks, page, [("answer", SECURITY_CODE), ("action", "answer")])

    assert _values(mfa.text, "phone") == ["•••-•••-4242", "•••-•••-1313"]
    assert _values(mfa.text, "method") == ["Text", "Call"]
    assert f"Enter the security code you heard on the call to {PHONE}" in code.text
    assert done.status_code == 302


def test_the_control_shortcuts_answer_every_type(flinks: SandboxApi) -> None:
    code_prompt = f"Enter the security code sent by text message to {PHONE}"
    answers = {**CHOICE_ANSWERS, PHONE: ["Text"], code_prompt: [SECURITY_CODE]}

    connect = flinks.control(
        "POST",
        "connect/complete",
        {
            "authorize_token": flinks.token(),
            "username": "test_mfa_text_or_call",
            "password": PASSWORD,
            "answers": answers,
        },
    )
    oauth = flinks.control(
        "POST",
        "oauth/complete",
        {
            "session": _bank_page(flinks),
            "username": "test_mfa_multiple_answers",
            "password": PASSWORD,
            "answers": answers,
        },
    )
    missing = flinks.control(
        "POST",
        "connect/complete",
        {
            "authorize_token": flinks.token(),
            "username": "test_mfa_text_or_call",
            "password": PASSWORD,
            "answers": CHOICE_ANSWERS,
        },
    )

    assert connect.status_code == 200, connect.text
    assert oauth.status_code == 200, oauth.text
    assert "loginId=" in oauth.json()["location"]
    assert missing.status_code == 401
    assert missing.json()["error"] == "mfa_answer_missing"
